import re
import subprocess

import numpy as np
import pytest
from sklearn.dummy import DummyRegressor
from sklearn.linear_model import Ridge
from system_packages import ensure_debian_package

from bmdkit import RepeatedBMDStratifiedKFold
from bmdkit.evaluation import compare_models
from bmdkit.report import FIGURES, INTERVAL_FIGURES, write_report

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(160, 2))
    y = 0.85 + 0.12 * X[:, 0] + rng.normal(0, 0.05, 160)
    res = compare_models({"ridge": Ridge(), "a rather long model name": Ridge(alpha=100.0),
                          "mean": DummyRegressor()}, X, y, cv=5, baseline="mean", progress=False)
    return write_report(res, tmp_path_factory.mktemp("report"), synthetic=True,
                        title="Test <report>", n_boot=200)


def test_files_and_self_contained_page(report):
    for stem in (*FIGURES, *INTERVAL_FIGURES):
        png = report.parent / f"{stem}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = report.read_text()
    assert page.count('src="data:image/png;base64,') == len(FIGURES) + len(INTERVAL_FIGURES)
    assert not re.search(r'src="(?!data:)', page)  # nothing loaded from elsewhere
    assert "Synthetic data" in page and "Test &lt;report&gt;" in page


def test_page_opens_with_the_summary(report):
    page = report.read_text()
    order = [page.index(f'id="{anchor}"') for anchor in ("summary", "referral", "figures", "tables")]
    assert order == sorted(order)
    summary = page[order[0]:order[2]]
    assert re.search(r"R²</th>\s*<td>0\.\d{3} \[0\.\d{3}, 0\.\d{3}\]</td>", summary)
    for label in ("sensitivity, T = −1", "specificity, T = −2.5", "coverage of 90% intervals"):
        assert label in summary
    assert "ridge significantly beat the baseline mean on MSE" in summary
    assert "fraction referred" in summary and "sensitivity of the rest" in summary
    tests = page.index("<details><summary>Paired tests")
    assert tests > order[3] and page.index("</details>", tests) > tests


def render_in_browser(report, tmp_path):
    """Lay ``report`` out in headless chromium at 1400 px: what a reader's browser shows.

    Returns a dict: ``dom`` (the page after scripts ran), ``figures`` ({figure id:
    natural width of its decoded image}), ``page`` and ``scroll`` (the page's
    width and scroll width) and ``tables`` (the right edge of every table).
    """
    chromium = ensure_debian_package("chromium", provides="chromium")
    flags = CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,1000"]
    # images only report a natural width once decoded, tables their width once laid out:
    # a script writes both, and the page's width, into the DOM
    probe = tmp_path / "probe.html"
    probe.write_text(report.read_text().replace(
        "</body>",
        "<script>window.addEventListener('load', () => { const page = "
        "document.documentElement.clientWidth; document.body.insertAdjacentHTML('beforeend', "
        "'<p id=probe>' + [...document.querySelectorAll('figure')].map(f => f.id + ':' + "
        "f.querySelector('img').naturalWidth).join(',') + '</p>' + "
        "'<p id=page>' + page + ',' + document.documentElement.scrollWidth + '</p><p id=tables>' + "
        "[...document.querySelectorAll('table')].map(t => Math.ceil(t.getBoundingClientRect()"
        ".right)).join(',') + '</p>'); });</script></body>"))
    dom = subprocess.run(
        [chromium, *flags, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    figures = dict(item.rsplit(":", 1) for item in
                   re.search(r'<p id="probe">([^<]*)</p>', dom).group(1).split(","))
    page, scroll = map(int, re.search(r'<p id="page">(\d+),(\d+)</p>', dom).groups())
    tables = re.search(r'<p id="tables">([\d,]*)</p>', dom).group(1)
    return dict(dom=dom, figures={k: int(v) for k, v in figures.items()}, page=page,
                scroll=scroll, tables=[int(r) for r in tables.split(",") if r])


def test_page_renders_in_a_real_browser(report, tmp_path):
    seen = render_in_browser(report, tmp_path)
    dom, page, rights = seen["dom"], seen["page"], seen["tables"]
    assert "<table" in dom and "ridge" in dom and "± " in dom
    assert set(seen["figures"]) == {*FIGURES, *INTERVAL_FIGURES}
    assert min(seen["figures"].values()) > 100
    assert page > 1300  # the 1400 px window, less a scroll bar
    assert len(rights) >= 6 and max(rights) <= page, (rights, page)  # no table past the edge
    assert seen["scroll"] <= page  # nothing else makes the page scroll sideways
    chromium = ensure_debian_package("chromium", provides="chromium")
    flags = CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,1000"]
    shot = tmp_path / "page.png"
    subprocess.run([chromium, *flags, f"--screenshot={shot}",
                    report.as_uri()], capture_output=True, timeout=120, check=True)
    assert shot.stat().st_size > 10_000


def test_repeated_cv_counts_rows_once(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(90, 2))
    y = 0.85 + 0.12 * X[:, 0] + rng.normal(0, 0.05, 90)
    res = compare_models({"ridge": Ridge(), "mean": DummyRegressor()}, X, y,
                         cv=RepeatedBMDStratifiedKFold(3, n_repeats=2, random_state=0),
                         baseline="mean", progress=False)
    assert len(res.predictions) == 2 * 2 * 90  # two models, every row twice
    page = write_report(res, tmp_path, n_boot=50).read_text()
    assert "<p>90 rows, 6 folds;" in page


def test_report_without_screening_thresholds(tmp_path):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(60, 2))
    y = 0.85 + 0.12 * X[:, 0] + rng.normal(0, 0.05, 60)
    res = compare_models({"ridge": Ridge(), "mean": DummyRegressor()}, X, y, cv=3,
                         thresholds={}, baseline="mean", progress=False)
    page = write_report(res, tmp_path, n_boot=50)
    assert page.is_file() and (tmp_path / "roc.png").is_file()
    assert not (tmp_path / "referral.png").exists()  # no thresholds: nothing to refer at


def test_figures_match_the_pooled_metrics():
    """Titles of the scatter and Bland-Altman plots quote results.pooled_metrics()."""
    from bmdkit.report import plot_bland_altman, plot_roc, plot_scatter

    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 2))
    y = 0.85 + 0.12 * X[:, 0] + rng.normal(0, 0.05, 80)
    res = compare_models({"ridge": Ridge(), "mean": DummyRegressor()}, X, y, cv=4,
                         baseline="mean", progress=False)
    pooled = res.pooled_metrics()
    for plot in (plot_scatter, plot_bland_altman, plot_roc):
        titles = [ax.get_title() for ax in plot(res).axes]
        assert titles == [ax.get_title() for ax in plot(res, pooled).axes]
    scatter = plot_scatter(res).axes[0].get_title()
    assert f"R² {pooled.loc['ridge', 'r2']:.3f}" in scatter
    labels = [t.get_text() for t in plot_roc(res).axes[0].get_legend().get_texts()]
    assert f"ridge (AUC {pooled.loc['ridge', 'roc_auc@T=-1.0']:.3f})" in labels


def test_explanation_figures_and_results_without_intervals(tmp_path):
    from matplotlib.figure import Figure

    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, 2))
    y = 0.85 + 0.12 * X[:, 0] + rng.normal(0, 0.05, 60)
    res = compare_models([Ridge()], X, y, cv=3, confidence=None, progress=False)
    fig = Figure()
    fig.subplots().plot([0, 1], [1, 0])
    page = write_report(res, tmp_path, n_boot=50,
                        extra_figures={"saliency": (fig, "Saliency <of> subject 1")}).read_text()
    assert 'id="more-figures">More figures</h2>' in page and "Saliency &lt;of&gt; subject 1" in page
    assert (tmp_path / "saliency.png").is_file() and not (tmp_path / "intervals.png").exists()
    assert "coverage" not in page and 'id="referral"' not in page


def test_several_sites_get_a_summary_and_figures_each(tmp_path):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(120, 2))
    Y = 0.85 + 0.12 * X[:, :1] + rng.normal(0, 0.05, (120, 2))
    sites = ["femoral_neck", "lumbar_spine"]  # the lumbar spine has no T-score reference here
    res = compare_models({"ridge": Ridge(), "mean": DummyRegressor()}, X, Y, cv=4, site=sites,
                         baseline="mean", progress=False)
    page = write_report(res, tmp_path, n_boot=50).read_text()
    for site in sites:
        assert f'id="{site}-summary"' in page and f'id="{site}-figures"' in page
        for stem in ("scatter", "bland_altman", "fold_scores"):
            assert (tmp_path / f"{site}_{stem}.png").is_file()
    neck = page[page.index('id="femoral_neck-summary"'):page.index('id="lumbar_spine-summary"')]
    spine = page[page.index('id="lumbar_spine-summary"'):page.index('id="figures"')]
    r2 = res.for_site("lumbar_spine").pooled_metrics().loc["ridge", "r2"]
    assert f"{r2:.3f} [" in spine and "sensitivity, T = −1" not in spine
    assert "sensitivity, T = −1" in neck and 'id="femoral_neck-referral"' in neck
    assert (tmp_path / "femoral_neck_referral.png").is_file()
    assert not (tmp_path / "lumbar_spine_referral.png").exists()  # no threshold to refer at
    assert "lumbar_spine/r2" in page  # the full tables keep every site


def test_the_referral_sentence_says_in_words_when_no_case_is_left_unreferred():
    import pandas as pd

    from bmdkit.report import REFERRAL_LABELS, _referral_sentence

    values = {"referred": 1.0, "sensitivity_rest": np.nan, "specificity_rest": 0.9,
              "sensitivity_all": 0.37, "specificity_all": 0.8}
    table = pd.DataFrame({"XAttn": pd.Series(
        {("T = −2.5", REFERRAL_LABELS[key]): value for key, value in values.items()})})
    results = type("Results", (), {"thresholds": {"T = −2.5": 0.691}})()
    sentence = _referral_sentence(results, table)
    assert "nan" not in sentence
    assert ("leaves no case below the threshold unreferred (sensitivity 0.37 without "
            "referral) and changes specificity from 0.80 to 0.90") in sentence
