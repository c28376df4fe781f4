"""What a saved model says about itself in a report, and the UIDs of its reports.

A report names the model that made it (class, fusion, backbone, version) and
summarises how it was trained (inputs, image size, epochs, loss, interval
method), read from the saved folder's ``model.json`` (and ``conformal.json``).
Report UIDs are derived from the source image's UID and the model's weights
checksum: the same image answered twice by the same model gets the same SOP
Instance UID, so a report sent again after a crash replaces itself in a PACS
instead of appearing twice.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ModelCard", "derived_uid"]


#: Namespace of the name-based (version 5) UUIDs behind the report UIDs.
_NAMESPACE = uuid.UUID("6f1b9f0e-4f5e-5b8a-9a57-b3d6a1c0b7e1")


def derived_uid(*parts):
    """A UID determined by ``parts``: ``2.25.`` and the integer of a name-based UUID
    (version 5, RFC 4122; DICOM PS3.5 B.2): the same parts, the same UID.

    Examples
    --------
    >>> derived_uid("1.2.3", "abc") == derived_uid("1.2.3", "abc")
    True
    >>> derived_uid("1.2.3", "abc") == derived_uid("1.2.4", "abc")
    False
    """
    return f"2.25.{uuid.uuid5(_NAMESPACE, '|'.join(str(p) for p in parts)).int}"


@dataclass(frozen=True)
class ModelCard:
    """The model's name, version and training summary, as reports state them.

    Attributes
    ----------
    name : str
        E.g. ``"bmdkit BMDRegressor (fusion concat, resnet10t)"``.
    version : str
        bmdkit's version and the first 12 hex digits of the weights' SHA-256.
    summary : tuple of str
        One ``"key: value"`` line per training setting.
    checksum : str
        SHA-256 of the (first) model's weights: seeds the report UIDs.
    conformal : dict or None
        ``method``, ``confidence`` and ``calibration_rows`` of a conformal model.
    """

    name: str
    version: str
    summary: tuple
    checksum: str
    conformal: dict | None = None

    @classmethod
    def from_folder(cls, path):
        """The card of the model saved in the folder ``path`` (by ``bmdkit fit``)."""
        from bmdkit.persistence import FORMAT, META_FILE, read_description
        from bmdkit.uncertainty import CONFORMAL_FILE

        path = Path(path)
        conformal = None
        if (path / CONFORMAL_FILE).is_file():
            meta = json.loads((path / CONFORMAL_FILE).read_text(encoding="utf-8"))
            conformal = {"method": meta["method"], "confidence": float(meta["confidence"]),
                         "calibration_rows": len(meta["calibration_rows"]),
                         "models": len(meta["models"])}
            path = path / meta["models"][0]
        meta = read_description(path / META_FILE, fmt=FORMAT, what="bmdkit model")
        params, fitted = meta["params"], meta["fitted"]
        estimator = meta["class"].rpartition(".")[2]
        details = [f"fusion {params['fusion']}"] if params.get("fusion") else []
        if params.get("backbone") and "MetadataOnly" not in estimator:
            details.append(str(params["backbone"]))
        name = f"bmdkit {estimator}" + (f" ({', '.join(details)})" if details else "")
        image_col = params.get("image_col", "image_path")
        inputs = [c for c in fitted["feature_names_in_"] if c != image_col]
        checksum = meta["weights"]["sha256"]
        version = f"{meta['versions'].get('bmdkit', '?')}+{checksum[:12]}"
        summary = [
            f"inputs: image + {', '.join(inputs)}",
            f"sites: {', '.join(fitted['sites_'] or ['femoral_neck'])}",
            f"image size: {params.get('image_size')} px",
            f"epochs: {params.get('max_epochs')}",
            f"loss: {params.get('loss')}",
            f"densitometer scale: {meta['clinical']['densitometer']}",
        ]
        if conformal:
            summary.append(f"interval: {conformal['method']} conformal, "
                           f"{conformal['confidence']:.0%}, {conformal['models']} models, "
                           f"{conformal['calibration_rows']} calibration rows")
        return cls(name, version, tuple(summary), checksum, conformal)
