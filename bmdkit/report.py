"""Figures and a self-contained HTML report of a model comparison.

:func:`write_report` turns :class:`~bmdkit.evaluation.ComparisonResults`
into PNG figures (predicted vs DXA, Bland-Altman, ROC at each screening
threshold, confusion matrices, per-fold scores, conformal intervals and
referral) and one HTML page that embeds them (base64), so the page can be
mailed or archived alone. The page opens with a summary (metrics with
bootstrap intervals, the headline test, referral), then the figures, then
the full tables. Results of several BMD sites get a summary and figures per
site (:meth:`~bmdkit.evaluation.ComparisonResults.for_site`). Results from
synthetic data are labelled as such.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import confusion_matrix, roc_curve

from bmdkit.clinical import WHO_CATEGORIES, t_score, who_category
from bmdkit.evaluation import KEY_METRICS
from bmdkit.files import atomic_path, write_text
from bmdkit.metrics import has_t_score_reference
from bmdkit.referral import referral_analysis, referral_curve

__all__ = ["FIGURES", "INTERVAL_FIGURES", "extra_figure_section", "referral_table",
           "summary_table", "write_report"]

#: Metrics shown in the per-fold comparison figure (when present).
FOLD_METRICS = ("mse", "mae", "r2", "roc_auc@T=-1.0")
_PANEL = 3.4  # inches per subplot


def _grid(n, ncols=None):
    ncols = ncols or min(n, 4)
    nrows = int(np.ceil(n / ncols))
    fig = Figure(figsize=(_PANEL * ncols, _PANEL * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes.flat


def _by_model(results):
    return [(name, results.predictions[results.predictions["model"] == name])
            for name in results.model_names]


def _pooled(results, pooled):
    return results.pooled_metrics() if pooled is None else pooled


def plot_scatter(results, pooled=None):
    """Predicted vs DXA BMD per model, with the identity line and thresholds."""
    pooled = _pooled(results, pooled)
    parts = _by_model(results)
    fig, axes = _grid(len(parts))
    lo = min(results.predictions[["y_true", "y_pred"]].min())
    hi = max(results.predictions[["y_true", "y_pred"]].max())
    pad = 0.05 * (hi - lo)
    for ax, (name, part) in zip(axes, parts):
        m = pooled.loc[name]
        ax.scatter(part["y_true"], part["y_pred"], s=10, alpha=0.6)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=1, label="identity")
        for value in results.thresholds.values():
            ax.axvline(value, color="grey", lw=0.6, ls=":")
            ax.axhline(value, color="grey", lw=0.6, ls=":")
        ax.set(xlim=(lo - pad, hi + pad), ylim=(lo - pad, hi + pad), aspect="equal",
               xlabel="DXA BMD (g/cm²)", ylabel="predicted BMD (g/cm²)",
               title=f"{name}\nR² {m['r2']:.3f}, MAE {m['mae']:.3f}")
    return fig


def plot_bland_altman(results, pooled=None):
    """Bland-Altman plot per model: difference vs mean, bias and 95 % limits."""
    pooled = _pooled(results, pooled)
    parts = _by_model(results)
    fig, axes = _grid(len(parts))
    for ax, (name, part) in zip(axes, parts):
        m = pooled.loc[name]
        mean = (part["y_true"] + part["y_pred"]) / 2
        ax.scatter(mean, part["y_pred"] - part["y_true"], s=10, alpha=0.6)
        ax.axhline(m["bias"], color="C3", label=f"bias {m['bias']:+.3f}")
        for key in ("loa_lower", "loa_upper"):
            ax.axhline(m[key], color="C3", ls="--", lw=1)
        ax.set(xlabel="mean of DXA and predicted (g/cm²)", ylabel="predicted − DXA (g/cm²)",
               title=f"{name}\nLoA [{m['loa_lower']:+.3f}, {m['loa_upper']:+.3f}]")
        ax.legend(loc="upper right", fontsize=8)
    return fig


def plot_roc(results, pooled=None):
    """ROC curves of every model at each screening threshold (pooled out-of-fold)."""
    pooled = _pooled(results, pooled)
    fig, axes = _grid(max(len(results.thresholds), 1))
    if not results.thresholds:
        axes[0].text(0.5, 0.5, "no screening thresholds", ha="center", va="center")
        axes[0].set_axis_off()
    y_true = results.predictions.drop_duplicates("row")["y_true"]
    for ax, (label, threshold) in zip(axes, results.thresholds.items()):
        for name, part in _by_model(results):
            positive = part["y_true"].to_numpy() < threshold
            if positive.all() or not positive.any():
                continue
            fpr, tpr, _ = roc_curve(positive, -part["y_pred"].to_numpy())
            auc = pooled.loc[name, f"roc_auc@{label}"]
            ax.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})")
        ax.plot([0, 1], [0, 1], "k:", lw=1)
        ax.set(xlabel="1 − specificity", ylabel="sensitivity", aspect="equal",
               title=f"BMD < {threshold:.3f} g/cm² ({label}): {(y_true < threshold).sum()} cases")
        ax.legend(loc="lower right", fontsize=7)
    return fig


def plot_confusion(results, pooled=None):
    """Confusion matrices: rows models, columns thresholds and the WHO categories."""
    parts = _by_model(results)
    columns = list(results.thresholds.items())
    if has_t_score_reference(**results.clinical):  # WHO categories need T-scores
        columns.append(("WHO", None))
    if not columns:
        fig, axes = _grid(1)
        axes[0].text(0.5, 0.5, "no screening thresholds and no T-scores at this site",
                     ha="center", va="center")
        axes[0].set_axis_off()
        return fig
    fig = Figure(figsize=(2.8 * len(columns), 2.6 * len(parts)), layout="constrained")
    axes = fig.subplots(len(parts), len(columns), squeeze=False)
    for row, (name, part) in enumerate(parts):
        for col, (label, threshold) in enumerate(columns):
            ax = axes[row, col]
            if threshold is None:
                names = list(WHO_CATEGORIES)
                true = who_category(t_score(part["y_true"].to_numpy(), **results.clinical))
                pred = who_category(t_score(part["y_pred"].to_numpy(), **results.clinical))
            else:
                names = ["low", "not low"]
                true = np.where(part["y_true"] < threshold, "low", "not low")
                pred = np.where(part["y_pred"] < threshold, "low", "not low")
            matrix = confusion_matrix(true, pred, labels=names)
            ax.imshow(matrix, cmap="Blues")
            for (i, j), count in np.ndenumerate(matrix):
                ax.text(j, i, str(count), ha="center", va="center",
                        color="white" if count > matrix.max() / 2 else "black")
            ticks = range(len(names))
            ax.set_xticks(ticks, names, fontsize=6)
            ax.set_yticks(ticks, names, fontsize=6, rotation=90, va="center")
            ax.set_title(f"{name}: {label}", fontsize=8)
            ax.set_xlabel("predicted", fontsize=7)
            ax.set_ylabel("DXA", fontsize=7)
    return fig


def plot_fold_scores(results, pooled=None):
    """Per-fold scores of each model; lines join the same fold across models."""
    metrics = [m for m in FOLD_METRICS if m in results.metric_names]
    fig, axes = _grid(len(metrics))
    names = results.model_names
    for ax, metric in zip(axes, metrics):
        per_fold = results.per_fold(metric)[names]
        for _, values in per_fold.iterrows():
            ax.plot(range(len(names)), values.to_numpy(), color="grey", lw=0.6, alpha=0.6)
        ax.scatter(np.tile(np.arange(len(names)), len(per_fold)), per_fold.to_numpy().ravel(),
                   s=12, zorder=3)
        ax.errorbar(np.arange(len(names)), per_fold.mean(), yerr=per_fold.std(ddof=1), fmt="D",
                    color="C3", capsize=4, zorder=4)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=7)
        ax.set_title(f"{metric} per fold (mean ± SD)")
    return fig


def _interval_parts(results):
    return [(name, part) for name, part in _by_model(results) if "y_lower" in part]


def plot_intervals(results, pooled=None):
    """Out-of-fold conformal intervals per model, subjects sorted by prediction."""
    pooled = _pooled(results, pooled)
    parts = _interval_parts(results)
    fig, axes = _grid(len(parts))
    for ax, (name, part) in zip(axes, parts):
        part = part.sort_values("y_pred")
        x = np.arange(len(part))
        inside = (part["y_lower"] <= part["y_true"]) & (part["y_true"] <= part["y_upper"])
        ax.vlines(x, part["y_lower"], part["y_upper"], color="C0", alpha=0.3, lw=1)
        ax.plot(x, part["y_pred"], color="C0", lw=1, label="predicted")
        ax.scatter(x[inside], part["y_true"][inside], s=5, color="k", label="DXA, inside")
        ax.scatter(x[~inside], part["y_true"][~inside], s=9, color="C3", label="DXA, outside")
        for value in results.thresholds.values():
            ax.axhline(value, color="grey", lw=0.6, ls=":")
        m = pooled.loc[name]
        ax.set(xlabel="subjects, by predicted BMD", ylabel="BMD (g/cm²)",
               title=f"{name}: {results.confidence:.0%} intervals\ncoverage "
                     f"{m['coverage']:.3f}, mean width {m['interval_width']:.3f} g/cm²")
        ax.legend(loc="upper left", fontsize=6)
    return fig


def plot_referral(results, pooled=None):
    """Fraction referred vs sensitivity and specificity of the rest, at each threshold."""
    curves = {name: referral_curve(part, results.thresholds)
              for name, part in _interval_parts(results)}
    fig, axes = _grid(max(len(results.thresholds), 1))
    for ax, label in zip(axes, results.thresholds):
        for i, (name, curve) in enumerate(curves.items()):
            at = curve[curve["threshold"] == label]
            ax.plot(at["referred"], at["sensitivity_rest"], "-o", ms=3, color=f"C{i}",
                    label=f"{name}: sensitivity")
            ax.plot(at["referred"], at["specificity_rest"], "--s", ms=3, color=f"C{i}",
                    label=f"{name}: specificity")
            mark = at[np.isclose(at["confidence"], results.confidence)]
            ax.scatter(mark["referred"], mark["sensitivity_rest"], s=60, facecolors="none",
                       edgecolors="k", zorder=4)
        ax.set(xlabel="fraction referred to DXA", ylabel="among the rest",
               title=f"referral at {label} ({results.thresholds[label]:.3f} g/cm²)")
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:  # one legend below the panels: the models are the same in each
        fig.legend(handles, labels, loc="outside lower center", ncol=min(4, len(labels)),
                   fontsize=7)
    return fig


#: File stem -> (figure function, caption) of every figure in the report. Each function
#: takes ``(results, pooled=None)``; ``pooled`` is ``results.pooled_metrics()``, computed
#: when not given (functions that need no pooled metrics ignore it).
FIGURES = {
    "scatter": (plot_scatter, "Predicted vs DXA BMD (out-of-fold), identity line dashed, "
                              "screening thresholds dotted."),
    "bland_altman": (plot_bland_altman, "Bland–Altman: bias (solid) and 95 % limits of "
                                        "agreement (dashed)."),
    "roc": (plot_roc, "ROC curves for detecting BMD below each threshold "
                      "(score: −predicted BMD), pooled out-of-fold predictions."),
    "confusion": (plot_confusion, "Confusion matrices at each threshold and for the three "
                                  "WHO categories (pooled out-of-fold)."),
    "fold_scores": (plot_fold_scores, "Scores of each fold; grey lines join the same fold."),
}
#: Figures drawn when the results hold conformal intervals (``results.confidence``).
INTERVAL_FIGURES = {
    "intervals": (plot_intervals, "Conformal prediction intervals around the out-of-fold "
                                  "predictions, each calibrated on the other folds' residuals "
                                  "only; red: DXA outside its interval."),
    "referral": (plot_referral, "Referral: rows whose interval contains a threshold are "
                                "referred to DXA; sensitivity (solid) and specificity (dashed) "
                                "of the point prediction among the rest, for interval levels "
                                "50–95 % (circled: the report's level)."),
}

#: Summary rows: metric -> label.
SUMMARY_LABELS = {
    "r2": "R²", "mae": "MAE (g/cm²)",
    "sensitivity@T=-1.0": "sensitivity, T = −1", "specificity@T=-1.0": "specificity, T = −1",
    "sensitivity@T=-2.5": "sensitivity, T = −2.5", "specificity@T=-2.5": "specificity, T = −2.5",
    "coverage": "interval coverage", "interval_width": "mean interval width (g/cm²)",
}
#: Referral table rows: column of referral_analysis -> label.
REFERRAL_LABELS = {"referred": "fraction referred", "sensitivity_rest": "sensitivity of the rest",
                   "specificity_rest": "specificity of the rest",
                   "sensitivity_all": "sensitivity, no referral",
                   "specificity_all": "specificity, no referral"}

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em;
       color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; white-space: nowrap; }
.scroll { overflow-x: auto; max-width: 100%; }
th { background: #f3f3f3; }
.synthetic { background: #fff3cd; border: 2px solid #d39e00; padding: 0.8em; font-weight: bold; }
.verdict { font-size: 1.1em; }
details { margin: 1em 0; } summary { cursor: pointer; font-weight: bold; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; }
"""


def _table_html(frame, float_format="{:.4g}".format):
    table = frame.to_html(classes="results", border=0, float_format=float_format, na_rep="–")
    return f'<div class="scroll">{table}</div>'


def _figure_html(fig, stem, caption, out_dir, *, synthetic, dpi):
    """Save ``fig`` as ``<stem>.png`` in ``out_dir`` and return its embedded <figure>."""
    if synthetic:
        fig.suptitle("synthetic data", color="#b35c00", fontsize=9, x=0.99, ha="right")
    with atomic_path(out_dir / f"{stem}.png") as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    data = base64.b64encode((out_dir / f"{stem}.png").read_bytes()).decode("ascii")
    return (f'<figure id="{html.escape(stem)}"><img src="data:image/png;base64,{data}" '
            f'alt="{html.escape(caption)}"><figcaption>{html.escape(caption)}</figcaption></figure>')


def summary_table(results, intervals):
    """Summary: metrics as rows, models as columns, ``estimate [low, high]``."""
    rows = {}
    for metric, label in SUMMARY_LABELS.items():
        if metric not in intervals.columns.get_level_values(0):
            continue
        if metric == "coverage":
            label = f"coverage of {results.confidence:.0%} intervals"
        ci = intervals[metric]
        rows[label] = [f"{e:.3f} [{lo:.3f}, {hi:.3f}]"
                       for e, lo, hi in zip(ci["estimate"], ci["low"], ci["high"])]
    return pd.DataFrame(rows, index=intervals.index).T.rename_axis(None, axis=1)


def referral_table(results):
    """Referral analysis at ``results.confidence``: (threshold, quantity) rows, models as columns."""
    columns = {}
    for name, part in _interval_parts(results):
        table = referral_analysis(part["y_true"], part["y_pred"],
                                  part[["y_lower", "y_upper"]].to_numpy(), results.thresholds)
        columns[name] = table[list(REFERRAL_LABELS)].rename(columns=REFERRAL_LABELS).stack()
    return pd.DataFrame(columns)


def _referral_sentence(results, table):
    name = table.columns[0]
    parts = []
    for label in results.thresholds:
        r = table[name].loc[label]
        parts.append(
            f"at {label}, referring the {r['fraction referred']:.0%} of subjects whose "
            f"interval contains the threshold "
            + _change_in_words(r, "sensitivity", "no case below the threshold")
            + " and " + _change_in_words(r, "specificity", "no case above it")
            + " among the rest")
    return f"{name}: " + "; ".join(parts) + "."


def _change_in_words(row, metric, none_left):
    """``"changes sensitivity from 0.37 to 0.52"``, or what happened when the rest has no case.

    A screening metric of the unreferred rows is undefined (NaN) when no case of its
    class is left unreferred: said in words, not as "nan".

    Examples
    --------
    >>> row = {"sensitivity, no referral": 0.37, "sensitivity of the rest": float("nan")}
    >>> _change_in_words(row, "sensitivity", "no case below the threshold")
    'leaves no case below the threshold unreferred (sensitivity 0.37 without referral)'
    """
    before, after = row[f"{metric}, no referral"], row[f"{metric} of the rest"]
    if np.isnan(after):
        return f"leaves {none_left} unreferred ({metric} {before:.2f} without referral)"
    return f"changes {metric} from {before:.2f} to {after:.2f}"


def _site_views(results):
    """``[(site, results of that site)]`` for several sites, else ``[(None, results)]``."""
    if results.sites is None:
        return [(None, results)]
    return [(site, results.for_site(site)) for site in results.sites]


def _site_heading(site, level, anchor, text=None):
    """A heading naming ``site`` (none for one site), with an id unique per site."""
    return f'<h{level} id="{html.escape(site)}-{anchor}">{html.escape(text or site)}</h{level}>'


def _summary_html(results, site, *, headline, n_boot):
    """Summary table, headline test and referral of one site's results, as HTML parts."""
    parts = [] if site is None else [_site_heading(site, 3, "summary")]
    parts.append(_table_html(summary_table(results, results.bootstrap_intervals(n_boot=n_boot))))
    verdict = results.headline_test(headline)
    if verdict:
        parts.append(f'<p class="verdict">{html.escape(verdict)}</p>')
    if "y_lower" in results.predictions and results.thresholds:
        referral = referral_table(results)
        title = f"Referral to DXA ({results.confidence:.0%} intervals)"
        parts += [f'<h3 id="referral">{title}</h3>' if site is None else
                  _site_heading(site, 4, "referral", f"{site}: {title}"),
                  f"<p>{html.escape(_referral_sentence(results, referral))}</p>",
                  _table_html(referral, "{:.3f}".format)]
    return parts


def _figures_html(results, site, out_dir, *, synthetic, dpi):
    """The standard figures of one site's results (file stems ``<site>_<figure>``)."""
    pooled = results.pooled_metrics()
    figures = dict(FIGURES)
    if "y_lower" in results.predictions and results.thresholds:
        figures.update(INTERVAL_FIGURES)
    parts = [] if site is None else [_site_heading(site, 3, "figures")]
    for stem, (plot, caption) in figures.items():
        fig = plot(results, pooled)
        if site is not None:
            fig.text(0, 1, site, ha="left", va="bottom", fontsize=10, fontweight="bold")
            stem, caption = f"{site}_{stem}", f"{site}: {caption}"
        parts.append(_figure_html(fig, stem, caption, out_dir, synthetic=synthetic, dpi=dpi))
    return parts


def extra_figure_section(figures, out_dir, *, synthetic=False, dpi=110):
    """HTML of a "More figures" section from ``{stem: (Figure, caption)}``, PNGs into ``out_dir``.

    The hook for figures made outside this module, e.g. explanations
    (``bmdkit.explain.plot_explanations``): :func:`write_report` calls it
    with its ``extra_figures`` argument.
    """
    if not figures:
        return []
    return ['<h2 id="more-figures">More figures</h2>'] + [
        _figure_html(fig, stem, caption, Path(out_dir), synthetic=synthetic, dpi=dpi)
        for stem, (fig, caption) in figures.items()]


def write_report(results, out_dir, *, title="bmdkit model comparison", synthetic=False,
                 description=None, headline=None, extra_figures=None, n_boot=1000, dpi=110):
    """Write the figures (PNG) and ``report.html`` for ``results`` into ``out_dir``.

    The page opens with a summary a clinician reads first (per model: R²,
    MAE, sensitivity and specificity at T = −1 and T = −2.5 and interval
    coverage, each with a 95 % bootstrap interval over subjects; whether the
    headline model beat the baseline; what referral buys), then the figures,
    then the full tables for an engineer, the paired tests folded away.

    Parameters
    ----------
    results : ComparisonResults
    out_dir : str or Path
    title : str
    synthetic : bool, default=False
        Mark every page and figure title as results on synthetic data.
    description : str or None
        A paragraph shown under the title (e.g. the cohort and protocol).
    headline : str or None
        The model tested against the baseline in the summary (default: the
        first model that is not the baseline).
    extra_figures : dict of str to (matplotlib Figure, str) or None
        More figures by file stem, with captions, after the standard ones,
        e.g. ``bmdkit.explain.plot_explanations`` (see :func:`extra_figure_section`).
    n_boot : int, default=1000
        Bootstrap resamples of the summary's intervals.
    dpi : int, default=110

    Returns
    -------
    pathlib.Path
        The HTML page.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from sklearn.linear_model import Ridge
    >>> from sklearn.dummy import DummyRegressor
    >>> from bmdkit.evaluation import compare_models
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(120, 2)); y = 0.85 + 0.12 * X[:, 0] + rng.normal(0, 0.05, 120)
    >>> res = compare_models({"ridge": Ridge(), "mean": DummyRegressor()}, X, y, cv=4,
    ...                      baseline="mean", progress=False)
    >>> page = write_report(res, tempfile.mkdtemp(), synthetic=True, n_boot=100)
    >>> sorted(p.name for p in page.parent.glob("*.png"))  # doctest: +NORMALIZE_WHITESPACE
    ['bland_altman.png', 'confusion.png', 'fold_scores.png', 'intervals.png', 'referral.png',
     'roc.png', 'scatter.png']
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    label = "SYNTHETIC DATA — " if synthetic else ""
    views = _site_views(results)
    summaries, sections = [], []
    for site, view in views:
        summaries += _summary_html(view, site, headline=headline, n_boot=n_boot)
        sections += _figures_html(view, site, out_dir, synthetic=synthetic, dpi=dpi)
    pooled = results.pooled_metrics()
    key = results.scored_metrics(KEY_METRICS)
    n_rows = results.predictions["row"].nunique()
    n_folds = results.fold_scores["fold"].nunique()
    thresholds = "; ".join(
        (f"{site}: " if site else "") + (", ".join(
            f"{k}: {v:.3f} g/cm²" for k, v in view.thresholds.items()) or "none")
        for site, view in views)
    clinical = ", ".join(f"{k}={v if isinstance(v, str) else ', '.join(map(str, v))}"
                         for k, v in results.clinical.items())
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(label + title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if synthetic:
        parts.append('<p class="synthetic">Synthetic data: these numbers come from simulated '
                     "radiographs and metadata and say nothing about clinical accuracy.</p>")
    if description:
        parts.append(f"<p>{html.escape(description)}</p>")
    parts += [
        f"<p>{n_rows} rows, {n_folds} folds; screening thresholds {html.escape(thresholds)} "
        f"({html.escape(clinical)}).</p>",
        '<h2 id="summary">Summary</h2>',
        "<p>Pooled out-of-fold predictions; in brackets a 95 % bootstrap interval over "
        "subjects.</p>",
        *summaries,
    ]
    parts += ['<h2 id="figures">Figures</h2>', *sections]
    parts += extra_figure_section(extra_figures, out_dir, synthetic=synthetic, dpi=dpi)
    parts += ['<h2 id="tables">Full results</h2>',
              "<h3>Mean ± SD over folds</h3>", _table_html(results.table().T),
              "<h3>Pooled out-of-fold metrics</h3>", _table_html(pooled[key].T)]
    if results.baseline is not None:
        change = results.relative_change()[key].T
        tests = results.paired_tests(metrics=key).set_index(["model", "metric"])
        parts += [f"<h3>Relative change vs {html.escape(results.baseline)} (%)</h3>",
                  _table_html(change, "{:+.2f}".format),
                  f"<details><summary>Paired tests over folds (model − baseline), "
                  f"{len(tests)} rows</summary>", _table_html(tests), "</details>"]
    parts += ["<h2>Models</h2>", "<ul>"]
    parts += [f"<li><b>{html.escape(k)}</b>: <code>{html.escape(v)}</code></li>"
              for k, v in results.models.items()]
    parts += ["</ul>", "</body></html>"]
    page = out_dir / "report.html"
    write_text(page, "\n".join(parts))  # whole or not at all
    return page
