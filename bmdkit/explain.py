"""Why a model says what it says: image saliency and metadata attributions.

Both come from `Captum <https://captum.ai>`_, a maintained attribution
library for PyTorch, applied to a fitted estimator's network:

- **Image** (maps at the network's input resolution: ``image_size`` pixels
  square, the padded image the network saw, returned alongside):
  ``saliency="integrated_gradients"`` (default) is the absolute value of
  :class:`captum.attr.IntegratedGradients` of the predicted BMD from a
  featureless reference (each image flat at its own median) to the image:
  where the image moved the estimate, up or down. ``saliency="gradcam"`` is
  Grad-CAM (:class:`captum.attr.LayerGradCam`) on the backbone's last feature
  stage, upsampled: positive evidence only, as Grad-CAM is, so for a low-BMD
  subject it shows what little pushed the estimate up, and at small image
  sizes the last stage is only a few cells wide (2 × 2 at 48 px for a ResNet).
- **Metadata**: Shapley values of each field (:class:`captum.attr.ShapleyValueSampling`),
  in g/cm², against a reference subject whose numeric fields sit at the
  training mean and whose categorical fields are "unknown" (code 0). They
  sum, per row, to the prediction minus the reference's prediction (up to
  sampling error). Shapley values treat numeric and categorical fields alike,
  which integrated gradients cannot (categories have no path to integrate).
- **Cross-attention** (``fusion="xattn"``): the maps of
  :meth:`bmdkit.BMDRegressor.attention`.

:func:`plot_explanations` draws, for a few subjects across the BMD range, the
radiograph with its heat map and a bar chart of its field attributions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from sklearn.utils.validation import check_is_fitted
from skorch.dataset import unpack_data
from skorch.utils import to_tensor

from bmdkit.batching import torch_threads
from bmdkit.errors import ParameterError
from bmdkit.nn import fusion_class
from bmdkit.nn.backbones import join_tiles

SALIENCY_METHODS = ("integrated_gradients", "gradcam")

__all__ = ["SALIENCY_METHODS", "Explanation", "explain", "explanation_figures",
           "plot_explanations", "select_rows"]


@dataclass
class Explanation:
    """What :func:`explain` returns for the rows of ``X``.

    Attributes
    ----------
    predictions : ndarray of shape (n,)
        Predicted BMD (g/cm²) of the explained output.
    images : ndarray of shape (n, size, size) or None
        The images as the network saw them (contrast-normalised, padded);
        ``None`` for metadata-only models.
    saliency : ndarray of shape (n, size, size) or None
        Saliency maps (>= 0) aligned with ``images``.
    attributions : pandas.DataFrame of shape (n, n_fields)
        Shapley value of each metadata field, g/cm², indexed like ``X``; no
        columns for image-only models.
    reference : ndarray of shape (n,)
        Prediction (g/cm²) with every metadata field at the reference
        (numeric: training mean; categorical: unknown).
    attention : dict or None
        :meth:`bmdkit.BMDRegressor.attention` for ``fusion="xattn"``.
    """

    predictions: np.ndarray
    images: np.ndarray | None
    saliency: np.ndarray | None
    attributions: pd.DataFrame
    reference: np.ndarray
    attention: dict | None = None


def explain(model, X, *, output=0, saliency="integrated_gradients", n_steps=32, n_samples=25,
            layer=None, batch_size=32, random_state=0):
    """Image saliency and metadata attributions of a fitted bmdkit estimator.

    Parameters
    ----------
    model : BMDRegressor
        Fitted; any fusion. :meth:`bmdkit.BMDRegressor.explain` calls this.
    X : pandas.DataFrame
        Rows to explain, with the columns the model was fit on.
    output : int, default=0
        Which target to explain when the model predicts several sites.
    saliency : {"integrated_gradients", "gradcam"}, default="integrated_gradients"
        Image attribution method (see the module docstring).
    n_steps : int, default=32
        Integration steps of integrated gradients.
    n_samples : int, default=25
        Random field orders per row for the Shapley values (more: less
        sampling noise, proportionally slower).
    layer : str or None, default=None
        Backbone module for ``saliency="gradcam"`` (e.g. ``"layer4"``); ``None`` takes the
        last feature stage timm reports (``backbone.feature_info``).
    batch_size : int, default=32
    random_state : int, default=0
        Seeds the Shapley field orders.

    Returns
    -------
    Explanation

    Examples
    --------
    >>> from bmdkit import ConcatBMDRegressor
    >>> from bmdkit.datasets import make_synthetic_cohort
    >>> X, y = make_synthetic_cohort(n=40, image_size=32, random_state=0)  # synthetic phantoms
    >>> model = ConcatBMDRegressor(backbone="resnet10t", image_size=32, max_epochs=2,
    ...                            random_state=0).fit(X, y)
    >>> e = model.explain(X.head(3), n_steps=4, n_samples=4)
    >>> e.saliency.shape, e.attributions.shape
    ((3, 32, 32), (3, 10))
    >>> bool(np.allclose(e.attributions.sum(axis=1), e.predictions - e.reference, atol=1e-4))
    True
    """
    check_is_fitted(model, "net_")
    arrays = model.preprocessor_.transform(model._metadata_frame(X))
    module = model.net_.module_
    module.eval()
    scale, mean = _output_scale(model, output)
    fields = list(model.preprocessor_.numeric_cols_) + list(model.preprocessor_.categorical_cols_)
    if not fusion_class(model.fusion).uses_metadata:
        fields = []
    n = len(arrays["numeric"])
    parts = {"prediction": [], "reference": [], "saliency": [], "attributions": []}
    saliency_of = (_saliency_method(module, output, saliency, layer, n_steps)
                   if "image" in arrays else None)
    with torch_threads(model.n_threads), torch.random.fork_rng():
        torch.manual_seed(random_state)
        for start in range(0, n, batch_size):
            batch = {k: torch.as_tensor(v[start:start + batch_size].copy(), device=model.device)
                     for k, v in arrays.items()}
            if saliency_of is not None:
                parts["saliency"].append(saliency_of(batch))
            prediction, reference, values = _field_attributions(
                module, batch, output, n_fields=len(fields), n_samples=n_samples)
            parts["prediction"].append(prediction)
            parts["reference"].append(reference)
            parts["attributions"].append(values)
    index = X.index if isinstance(X, pd.DataFrame) else None
    return Explanation(
        predictions=np.concatenate(parts["prediction"]) * scale + mean,
        images=arrays["image"][:, 0].copy() if "image" in arrays else None,
        saliency=np.concatenate(parts["saliency"]) if saliency_of is not None else None,
        attributions=pd.DataFrame(np.concatenate(parts["attributions"]) * scale,
                                  columns=fields, index=index),
        reference=np.concatenate(parts["reference"]) * scale + mean,
        attention=model.attention(X) if fusion_class(model.fusion).has_attention else None,
    )


def _output_scale(model, output):
    """Scale and offset from the network's standardised output ``output`` to g/cm²."""
    scale, mean = np.atleast_1d(model.y_scale_), np.atleast_1d(model.y_mean_)
    if not 0 <= output < len(scale):
        raise ParameterError(f"output must be in [0, {len(scale)}), got {output!r}")
    return float(scale[output]), float(mean[output])


def _saliency_method(module, output, method, layer, n_steps):
    """A function of a batch giving its saliency maps ``(B, H, W)``, by ``method``."""
    from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam

    def forward(image, numeric, categorical):
        return module(image=image, numeric=numeric, categorical=categorical)[:, output]

    if method == "integrated_gradients":
        ig = IntegratedGradients(forward)

        def saliency(batch):
            with torch.enable_grad():
                attr = ig.attribute(batch["image"], baselines=_flat_median(batch["image"]), n_steps=n_steps,
                                    additional_forward_args=(batch["numeric"],
                                                             batch["categorical"]))
            return attr.detach().float().abs()[:, 0].cpu().numpy()

        return saliency
    if method != "gradcam":
        raise ParameterError(f"saliency must be one of {SALIENCY_METHODS}, got {method!r}")
    backbone = module.image_encoder.backbone
    name = layer if layer is not None else backbone.feature_info[-1]["module"]
    grad_cam = LayerGradCam(forward, backbone.get_submodule(name))

    def saliency(batch):
        image = batch["image"]
        with torch.enable_grad():
            cam = grad_cam.attribute(image, additional_forward_args=(
                batch["numeric"], batch["categorical"]), relu_attributions=True)
        cam = join_tiles(cam.detach().float(), module.image_encoder.tiles)
        cam = LayerAttribution.interpolate(cam, tuple(image.shape[-2:]), "bilinear")
        return cam[:, 0].cpu().numpy()

    return saliency


@torch.no_grad()
def _field_attributions(module, batch, output, *, n_fields, n_samples):
    """Standardised prediction, reference prediction and Shapley values of the fields."""
    from captum.attr import ShapleyValueSampling

    numeric, categorical = batch["numeric"], batch["categorical"]
    features = module.backbone_features(batch["image"]) if "image" in batch else None

    def forward(numeric, categorical, *features):
        extra = {"image_features": features[0]} if features else {}
        return module(numeric=numeric, categorical=categorical, **extra)[:, output]

    extra = (features,) if features is not None else ()
    baselines = (torch.zeros_like(numeric), torch.zeros_like(categorical))
    prediction = forward(numeric, categorical, *extra).float().cpu().numpy()
    reference = forward(*baselines, *extra).float().cpu().numpy()
    if n_fields == 0:
        return prediction, reference, np.zeros((len(prediction), 0))
    n_numeric = numeric.shape[1]
    mask = torch.arange(n_fields, device=numeric.device)[None]
    values = ShapleyValueSampling(forward).attribute(
        (numeric, categorical), baselines=baselines, additional_forward_args=extra,
        feature_mask=(mask[:, :n_numeric], mask[:, n_numeric:]), n_samples=n_samples,
        perturbations_per_eval=8)
    values = torch.cat([v.double() for v in values], dim=1).cpu().numpy()
    return prediction, reference, values


def select_rows(values, n=4):
    """Positions of ``n`` rows spread across the range of ``values`` (its quantiles).

    Examples
    --------
    >>> select_rows([0.9, 0.6, 1.1, 0.8, 0.7], n=3).tolist()
    [1, 3, 2]
    """
    values = np.asarray(values, dtype=float)
    order = np.argsort(values, kind="stable")
    picks = np.unique(np.round(np.linspace(0, len(values) - 1, min(n, len(values)))).astype(int))
    return order[picks]


def plot_explanations(explanation, *, rows=None, n=4, y=None, top=10, labels=None):
    """Radiographs with their heat maps and bar charts of field attributions.

    One line per subject: the image the network saw with its saliency map
    over it, and the ``top`` metadata fields by absolute attribution
    (g/cm², red pushes the estimate down, blue up).

    Parameters
    ----------
    explanation : Explanation
    rows : sequence of int or None
        Positions to show; ``None`` picks ``n`` across the BMD range
        (:func:`select_rows` of ``y``, else of the predictions).
    n : int, default=4
    y : array-like of shape (n_rows,) or None
        Measured BMD, shown next to the prediction and used to pick rows.
    top : int, default=10
    labels : sequence of str or None
        Row names for the titles (default: the attributions' index).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> e = Explanation(np.array([0.7, 0.9]), np.random.rand(2, 16, 16), np.random.rand(2, 16, 16),
    ...                 pd.DataFrame({"age": [-0.05, 0.02], "sex": [0.01, 0.03]}),
    ...                 np.array([0.8, 0.8]))
    >>> fig = plot_explanations(e, n=2)
    >>> len(fig.axes)
    4
    """
    import matplotlib.pyplot as plt

    attributions = explanation.attributions
    if rows is None:
        rows = select_rows(explanation.predictions if y is None else y, n)
    labels = list(attributions.index) if labels is None else list(labels)
    panels = [p for p, present in (("image", explanation.images is not None),
                                   ("bars", attributions.shape[1] > 0)) if present]
    fig, axes = plt.subplots(len(rows), len(panels), squeeze=False,
                             figsize=(4.2 * len(panels), 3.0 * len(rows)))
    for line, row in zip(axes, rows):
        title = f"{labels[row]}: predicted {explanation.predictions[row]:.3f} g/cm²"
        if y is not None:
            title += f", DXA {np.asarray(y, dtype=float)[row]:.3f}"
        for ax, panel in zip(line, panels):
            if panel == "image":
                ax.imshow(explanation.images[row], cmap="gray")
                if explanation.saliency is not None:
                    ax.imshow(explanation.saliency[row], cmap="jet", alpha=0.4)
                ax.set_axis_off()
                ax.set_title(title, fontsize=9)
            else:
                values = attributions.iloc[row]
                values = values.reindex(values.abs().sort_values().index[-top:])
                ax.barh([str(c) for c in values.index], values.to_numpy(),
                        color=np.where(values.to_numpy() < 0, "#c0392b", "#2e86c1"))
                ax.axvline(0, color="black", lw=0.6)
                ax.set_xlabel("attribution (g/cm²)", fontsize=8)
                ax.tick_params(labelsize=8)
                if "image" not in panels:
                    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def explanation_figures(model, X, y, *, n=4, name="model", stem="explanations", **kwargs):
    """A report's explanation figure: ``n`` rows of ``X`` across the range of ``y``, explained.

    What ``bmdkit demo`` and ``bmdkit cv`` put in the report for the
    headline model fitted on one cross-validation fold, explaining rows of
    that fold's test set (:func:`bmdkit.evaluation.compare_models`'s
    ``on_fit``): no extra fit, and no row the model was trained on.

    Parameters
    ----------
    model : fitted BMDRegressor
    X : pandas.DataFrame
        Candidate rows (e.g. a fold's test rows).
    y : array-like of shape (len(X),) or (len(X), k)
        Their measured BMD; rows are picked across the range of its first column.
    n : int, default=4
    name : str, default="model"
        Model name for the caption.
    stem : str, default="explanations"
        File stem of the figure.
    **kwargs
        Passed to :func:`explain`.

    Returns
    -------
    dict
        ``{stem: (Figure, caption)}``, as :func:`bmdkit.report.write_report`'s
        ``extra_figures`` takes it.
    """
    y = np.asarray(y, dtype=np.float64)
    y = y[:, 0] if y.ndim == 2 else y
    rows = np.sort(select_rows(y, n))
    subset = X.iloc[rows]
    explanation = explain(model, subset, **kwargs)
    figure = plot_explanations(explanation, rows=range(len(rows)), y=y[rows],
                               labels=[f"row {i}" for i in subset.index])
    what = "integrated gradients" if kwargs.get("saliency", "integrated_gradients") \
        == "integrated_gradients" else "Grad-CAM"
    caption = (f"Why {name} says what it says, for {len(rows)} held-out subjects across the "
               f"BMD range: the radiograph as the network saw it with its saliency map "
               f"({what}), and the Shapley value of each metadata field in g/cm² (red lowers "
               "the estimate, blue raises it). The model is the one fitted on the first "
               "cross-validation fold; the subjects are from that fold's test rows.")
    return {stem: (figure, caption)}


def _flat_median(image):
    """Each image replaced by its median everywhere: a featureless reference radiograph."""
    return image.flatten(1).median(1).values.view(-1, 1, 1, 1).expand_as(image).contiguous()


def attention_maps(model, X):
    """The attention maps of a fitted model whose fusion has them, for the rows of ``X``.

    What :meth:`bmdkit.BMDRegressor.attention` returns: the network's
    :meth:`~bmdkit.nn.BMDNet.forward_attention`, batch by batch, as arrays; a
    fusion without attention maps is a :class:`~bmdkit.errors.ParameterError`.
    """
    check_is_fitted(model, "net_")
    net = model.net_
    parts = {"image_to_metadata": [], "metadata_to_image": [], "image_pooling": []}
    net.module_.eval()
    with torch_threads(model.n_threads), torch.no_grad():
        dataset = net.get_dataset(model._predict_inputs(X))
        # no rows: one pass over an empty batch gives the arrays' shapes
        batches = net.get_iterator(dataset, training=False) if len(dataset) else [
            dataset.batch(np.arange(0))]
        for batch in batches:
            inputs = to_tensor(unpack_data(batch)[0], device=net.device)
            _, attention = net.module_.forward_attention(**inputs)
            for key in parts:
                parts[key].append(attention[key].float().cpu().numpy())
    result = {key: np.concatenate(value) for key, value in parts.items()}
    result["layer_weights"] = attention["layer_weights"].float().cpu().numpy()
    result["metadata_fields"] = model.preprocessor_.numeric_cols_ + model.preprocessor_.categorical_cols_
    return result
