import re
import subprocess

import numpy as np
import pytest
from sklearn.dummy import DummyRegressor
from sklearn.linear_model import Ridge
from system_packages import ensure_debian_package

from bmdkit.evaluation import compare_models
from bmdkit.report import FIGURES, write_report

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(160, 2))
    y = 0.85 + 0.12 * X[:, 0] + rng.normal(0, 0.05, 160)
    res = compare_models({"ridge": Ridge(), "mean": DummyRegressor()}, X, y, cv=5,
                         baseline="mean", progress=False)
    return write_report(res, tmp_path_factory.mktemp("report"), synthetic=True,
                        title="Test <report>")


def test_files_and_self_contained_page(report):
    for stem in FIGURES:
        png = report.parent / f"{stem}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = report.read_text()
    assert page.count('src="data:image/png;base64,') == len(FIGURES)
    assert not re.search(r'src="(?!data:)', page)  # nothing loaded from elsewhere
    assert "Synthetic data" in page and "Test &lt;report&gt;" in page


def test_page_renders_in_a_real_browser(report, tmp_path):
    chromium = ensure_debian_package("chromium", provides="chromium")
    flags = CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path / 'profile'}"]
    # images only report a natural width once decoded: a script writes it into the DOM
    probe = tmp_path / "probe.html"
    probe.write_text(report.read_text().replace(
        "</body>",
        "<script>window.addEventListener('load', () => { document.body.insertAdjacentHTML("
        "'beforeend', '<p id=probe>' + [...document.images].map(i => i.naturalWidth).join(',')"
        " + '</p>'); });</script></body>"))
    dom = subprocess.run(
        [chromium, *flags, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    assert "<table" in dom and "ridge" in dom and "± " in dom
    widths = [int(w) for w in re.search(r'<p id="probe">([\d,]*)</p>', dom).group(1).split(",")]
    assert len(widths) == len(FIGURES) and min(widths) > 100  # every figure decoded
    shot = tmp_path / "page.png"
    subprocess.run([chromium, *flags, f"--screenshot={shot}", "--window-size=1200,900",
                    report.as_uri()], capture_output=True, timeout=120, check=True)
    assert shot.stat().st_size > 10_000
