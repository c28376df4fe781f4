"""The reports of predicted rows, written to folders: what ``bmdkit predict`` and ``bmdkit serve``
share.

:class:`ReportWriter` turns a chunk of predictions (the result columns of
``bmdkit predict``) on DICOM images into a Structured Report per image, and
with ``fhir_dir`` a FHIR Observation, with ``overlay`` a Secondary Capture
of the saliency map. Files are named after the source's SOP Instance UID
(``<uid>.sr.dcm``, ``<uid>.sc.dcm``, ``<uid>.observation.json``) and written
whole or not at all (:func:`bmdkit.files.atomic_path`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from bmdkit.errors import InputError, ParameterError

__all__ = ["ReportWriter", "imputed_fields"]


def imputed_fields(model, X):
    """Per row of ``X``: the model's metadata columns that are missing (imputed as in training).

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> model = SimpleNamespace(preprocessor_=SimpleNamespace(
    ...     numeric_cols_=["age", "weight_kg"], categorical_cols_=["sex"]))
    >>> X = pd.DataFrame({"age": [70.0, None], "weight_kg": [60.0, None], "sex": ["F", None]})
    >>> imputed_fields(model, X)
    [[], ['age', 'weight_kg', 'sex']]
    """
    pre = model.preprocessor_
    columns = [*pre.numeric_cols_, *pre.categorical_cols_]
    missing = np.column_stack([X[c].isna().to_numpy() if c in X.columns
                               else np.ones(len(X), dtype=bool) for c in columns]) \
        if columns else np.zeros((len(X), 0), dtype=bool)
    return [[c for c, gone in zip(columns, row) if gone] for row in missing]


class ReportWriter:
    """Write the Structured Report (and FHIR Observation, saliency overlay) of each prediction.

    Parameters
    ----------
    model_dir : path
        The saved model's folder (for its :class:`~bmdkit.dicomnode.card.ModelCard`).
    sr_dir, fhir_dir : path or None
        Folders for the reports and the Observations (created if needed).
    overlay : bool
        Also write a Secondary Capture of the saliency map to ``sr_dir``.
    """

    def __init__(self, model_dir, *, sr_dir=None, fhir_dir=None, overlay=False):
        from bmdkit.dicomnode import require_extra
        from bmdkit.dicomnode.card import ModelCard

        require_extra("--sr-dir/--fhir-dir")
        if overlay and sr_dir is None:
            raise ParameterError("--overlay needs --sr-dir (the folder the overlays go to)")
        self.card = ModelCard.from_folder(model_dir)
        self.sr_dir = None if sr_dir is None else Path(sr_dir)
        self.fhir_dir = None if fhir_dir is None else Path(fhir_dir)
        self.overlay = overlay
        for folder in (self.sr_dir, self.fhir_dir):
            if folder is not None:
                folder.mkdir(parents=True, exist_ok=True)

    def check(self, paths):
        """An error naming the first of ``paths`` that is a file but not a DICOM file
        (missing files are the prediction's errors)."""
        from pydicom.misc import is_dicom

        bad = [str(p) for p in paths if _is_file(p) and not is_dicom(p)]
        if bad:
            raise InputError(f"--sr-dir/--fhir-dir need DICOM images; {len(bad)} are not",
                             dict.fromkeys(bad, "not a DICOM file"))

    def write_rows(self, model, X, results):
        """:meth:`write` for the rows ``X`` (the model's inputs, DICOM image paths) that
        ``model`` (a fitted BMDRegressor) predicted as ``results``; rows predicted
        without an image (``missing_image="metadata"``) get no report."""
        import pydicom

        has_image = np.array([_is_file(p) for p in X[model.image_col]], dtype=bool)
        X, results = X[has_image], results.reset_index(drop=True)[has_image]
        sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in X[model.image_col]]
        return self.write(sources, results, sites=model.sites_ or (),
                          imputed=imputed_fields(model, X), model=model, X=X)

    def reports(self, sources, results, *, sites=(), imputed=None):
        """The Structured Report of each source (pydicom header) and row of ``results``."""
        from bmdkit.dicomnode.sr import build_report

        imputed = imputed or [[] for _ in sources]
        return [build_report(source, row, self.card, sites=sites, imputed=gone)
                for source, row, gone in zip(sources, _rows(results), imputed)]

    def write(self, sources, results, *, sites=(), imputed=None, model=None, X=None):
        """Write the outputs of each source and row of ``results``; return the reports.

        ``model`` (a fitted BMDRegressor) and ``X`` (its input rows) are needed for
        ``overlay`` (for a conformal model: its first model's saliency).
        """
        from bmdkit.dicomnode.fhir import build_observation
        from bmdkit.files import atomic_path, write_text

        reports = self.reports(sources, results, sites=sites, imputed=imputed)
        imputed = imputed or [[] for _ in sources]
        for source, report, row, gone in zip(sources, reports, _rows(results), imputed):
            uid = source.SOPInstanceUID
            if self.sr_dir is not None:
                with atomic_path(self.sr_dir / f"{uid}.sr.dcm") as tmp:
                    report.save_as(tmp, enforce_file_format=True)
            if self.fhir_dir is not None:
                observation = build_observation(source, row, self.card, sites=sites,
                                                imputed=gone)
                write_text(self.fhir_dir / f"{uid}.observation.json",
                           observation.model_dump_json(indent=1))
        if self.overlay and len(sources):
            self._write_overlays(sources, model, X)
        return reports

    def _write_overlays(self, sources, model, X):
        from bmdkit.dicomnode.overlay import build_overlay
        from bmdkit.explain import explain
        from bmdkit.files import atomic_path

        explanation = explain(model, X, n_steps=8, n_samples=4)
        if explanation.saliency is None:
            raise ParameterError("--overlay needs a model that reads images; this one reads "
                                 "the metadata alone")
        for source, image, saliency in zip(sources, explanation.images, explanation.saliency):
            capture = build_overlay(source, image, saliency, self.card)
            with atomic_path(self.sr_dir / f"{source.SOPInstanceUID}.sc.dcm") as tmp:
                capture.save_as(tmp, enforce_file_format=True)


def _is_file(path):
    return isinstance(path, (str, os.PathLike)) and bool(str(path)) and os.path.isfile(path)


def _rows(results):
    """Rows of a DataFrame of result columns as dicts of Python scalars."""
    if isinstance(results, pd.DataFrame):
        return [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
                for row in results.to_dict(orient="records")]
    return list(results)
