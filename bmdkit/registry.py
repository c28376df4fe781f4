"""The registries of bmdkit's building blocks: fusions and losses, one list of each.

Each registry maps a name (``BMDRegressor(fusion=...)``, ``loss=...``) to an
:class:`Entry` carrying what every other place needs to know about it: its
label in tables and reports, and for a fusion the named estimator class
(``XAttnBMDRegressor``) and that estimator's own defaults. The built-in
entries are written here once and name their object as ``"module:attribute"``,
imported on first use, so that reading the names and labels (``bmdkit
--help``, the reports) imports no torch; the command line's choices, the
estimators' named classes, :meth:`Registry.labels`, ``ablation_models`` and
``make_criterion`` all read these lists (``tests/test_registry.py`` checks
that no other module lists fusion names). A fusion or loss of one's own is
added with :func:`bmdkit.nn.register_fusion` / :func:`bmdkit.losses.register_loss`.

Examples
--------
>>> FUSIONS.names()
('xattn', 'concat', 'daft', 'gated', 'late', 'image', 'metadata')
>>> FUSIONS.entry("xattn").label, FUSIONS.entry("xattn").estimator
('XAttn', 'XAttnBMDRegressor')
>>> FUSIONS.names("ablation")
('xattn', 'concat', 'daft', 'gated', 'late')
>>> LOSSES.names(), LOSSES.entry("weighted_smooth_l1").label
(('smooth_l1', 'weighted_smooth_l1', 'mse'), '+wSL1')
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from bmdkit.errors import ParameterError

__all__ = ["BASELINE_FUSION", "FUSIONS", "LOSSES", "Entry", "Registry", "baseline_label",
           "model_label"]


@dataclass
class Entry:
    """One registered building block.

    Attributes
    ----------
    name : str
        Its parameter value (``fusion="xattn"``).
    label : str
        Its display name in tables, reports and model names (``"XAttn"``).
    target : str or object
        ``"module:attribute"`` of the object (imported on first use), or the object.
    summary : str
        One sentence: what it is.
    estimator : str or None
        Fusions: the name of the estimator class with this fusion fixed.
    estimator_defaults : dict
        Fusions: the parameters whose default that estimator changes.
    tags : tuple of str
        Groups it belongs to: ``"default"`` (compared by ``bmdkit demo`` and
        ``bmdkit cv`` unless told otherwise), ``"ablation"`` (the paper's
        ablation of fusions), ``"baseline"`` (the reference of relative changes).
    """

    name: str
    label: str
    target: object
    summary: str = ""
    estimator: str | None = None
    estimator_defaults: dict = field(default_factory=dict)
    tags: tuple = ()


class Registry:
    """Names of one kind of building block (``kind``: ``"fusion"``, ``"loss"``) → :class:`Entry`."""

    def __init__(self, kind, entries=()):
        self.kind = kind
        self._entries = {}
        for entry in entries:
            self.add(entry)

    def add(self, entry):
        """Register ``entry``; a name registered already is an error."""
        if entry.name in self._entries:
            raise ValueError(f"a {self.kind} named {entry.name!r} is registered already")
        self._entries[entry.name] = entry
        return entry

    def names(self, tag=None):
        """The registered names, in registration order (those tagged ``tag`` if given)."""
        return tuple(name for name, entry in self._entries.items()
                     if tag is None or tag in entry.tags)

    def allowed(self):
        """What a name must be, in words: one of the registered names, in registration order.

        The text of the error of :meth:`entry`, and the description of a
        :class:`~bmdkit.params.Check` of a parameter naming an entry (it grows
        as entries are registered, so it is read when needed).

        Examples
        --------
        >>> LOSSES.allowed()
        "one of 'smooth_l1', 'weighted_smooth_l1', 'mse'"
        """
        return f"one of {', '.join(map(repr, self.names()))}"

    def entry(self, name):
        """The :class:`Entry` of ``name``, or a ParameterError listing the names."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):  # TypeError: an unhashable value
            raise ParameterError(f"{self.kind} must be {self.allowed()}, got {name!r}") from None

    def load(self, name):
        """The object registered as ``name`` (imported on first use)."""
        entry = self.entry(name)
        if isinstance(entry.target, str):
            module, _, attribute = entry.target.partition(":")
            entry.target = getattr(importlib.import_module(module), attribute)
        return entry.target

    def __contains__(self, name):
        return isinstance(name, str) and name in self._entries

    def __iter__(self):
        return iter(self.names())

    def __repr__(self):
        return f"Registry({self.kind!r}, {list(self.names())})"

    def labels(self):
        """``{name: label}`` of every entry."""
        return {name: entry.label for name, entry in self._entries.items()}


#: The fusions of image tokens and metadata (bmdkit.nn.fusions; docs/model.md).
FUSIONS = Registry("fusion", [
    Entry("xattn", "XAttn", "bmdkit.nn.fusions.xattn:XAttnFusion",
          "XAttn-BMD: bidirectional cross-attention fusion of radiograph and metadata.",
          "XAttnBMDRegressor", {"loss": "weighted_smooth_l1"}, ("default", "ablation")),
    Entry("concat", "Concat", "bmdkit.nn.fusions.concat:ConcatFusion",
          "Baseline: pooled image features concatenated with a metadata MLP embedding.",
          "ConcatBMDRegressor", tags=("default", "ablation", "baseline")),
    Entry("daft", "DAFT", "bmdkit.nn.fusions.daft:DAFTFusion",
          "Baseline: the metadata scales and shifts the image feature map (DAFT, Pölsterl "
          "et al. 2021).", "DAFTBMDRegressor", tags=("ablation",)),
    Entry("gated", "Gated", "bmdkit.nn.fusions.gated:GatedFusion",
          "Baseline: a learned per-sample gate between image and metadata features.",
          "GatedBMDRegressor", tags=("ablation",)),
    Entry("late", "Late", "bmdkit.nn.fusions.late:LateFusion",
          "Baseline: a learned linear combination of an image-only and a metadata-only "
          "prediction.", "LateFusionBMDRegressor", tags=("ablation",)),
    Entry("image", "Image-only", "bmdkit.nn.fusions.single:ImageOnlyFusion",
          "Baseline: the radiograph alone (metadata columns are ignored).",
          "ImageOnlyBMDRegressor", tags=("default",)),
    Entry("metadata", "Metadata-only", "bmdkit.nn.fusions.single:MetadataOnlyFusion",
          "Baseline: the clinical metadata alone; X needs no image column.",
          "MetadataOnlyBMDRegressor", tags=("default",)),
])
#: The fusion relative changes are measured against (tagged "baseline": Concat, the paper's).
BASELINE_FUSION = FUSIONS.names("baseline")[0]

#: The losses of BMDRegressor (bmdkit.losses: each a function giving the skorch
#: criterion settings; docs/model.md). Labels are appended to a fusion's label.
LOSSES = Registry("loss", [
    Entry("smooth_l1", "", "bmdkit.losses:smooth_l1_criterion",
          "Smooth L1 loss, every target weighted 1 (the default).", tags=("ablation",)),
    Entry("weighted_smooth_l1", "+wSL1", "bmdkit.losses:weighted_smooth_l1_criterion",
          "XAttn-BMD's loss: Smooth L1 with target-density weights.",
          tags=("ablation", "density_weights")),
    Entry("mse", "+MSE", "bmdkit.losses:mse_criterion", "Mean squared error."),
])


def model_label(fusion, loss=None):
    """A model's display name: its fusion's label, and its loss's unless that is empty.

    Examples
    --------
    >>> model_label("xattn"), model_label("concat", "weighted_smooth_l1")
    ('XAttn', 'Concat +wSL1')
    """
    loss_label = LOSSES.entry(loss).label if loss is not None else ""
    return " ".join(filter(None, [FUSIONS.entry(fusion).label, loss_label]))


def baseline_label(models, loss=None):
    """The baseline fusion's label under ``loss`` if it names one of ``models``, else None.

    The reference of relative changes in a comparison of ``models`` (a
    mapping or list of labels), when the comparison includes it.

    Examples
    --------
    >>> baseline_label({"XAttn": 1, "Concat": 2}), baseline_label(["XAttn"])
    ('Concat', None)
    >>> baseline_label(["Concat +wSL1"], "weighted_smooth_l1")
    'Concat +wSL1'
    """
    label = model_label(BASELINE_FUSION, loss)
    return label if label in models else None
