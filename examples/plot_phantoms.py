"""Draw a grid of SYNTHETIC hip phantoms from the demo cohort's generator.

Twelve subjects of ``make_synthetic_cohort(random_state=0)``, ordered by
their (synthetic) femoral neck BMD, each shown with the percentile contrast
normalisation the estimators apply. Writes docs/img/phantoms.png.

Run:  .venv/bin/python examples/plot_phantoms.py [out.png]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from bmdkit.datasets import make_synthetic_cohort  # noqa: E402
from bmdkit.io import normalise_contrast, read_image  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "docs" / "img" / "phantoms.png"


def plot_phantoms(out=DEFAULT_OUT, n=12, image_size=256, random_state=0):
    """Save the grid to ``out`` and return the figure."""
    with tempfile.TemporaryDirectory() as folder:
        X, y = make_synthetic_cohort(n=n, image_size=image_size, random_state=random_state,
                                     out_dir=folder)
        images = [normalise_contrast(read_image(p)) for p in X["image_path"]]
    order = np.argsort(y)
    cols = 4
    fig, axes = plt.subplots((n + cols - 1) // cols, cols, figsize=(2.4 * cols, 2.6 * n / cols))
    for ax, i in zip(axes.ravel(), order):
        ax.imshow(images[i], cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"BMD {y[i]:.2f} g/cm², {X['sex'][i]}, BMI {X['bmi'][i]:.0f}", fontsize=8)
        ax.axis("off")
    fig.suptitle("SYNTHETIC hip phantoms (bmdkit demo cohort) — not clinical images",
                 fontsize=10)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return fig


if __name__ == "__main__":
    plot_phantoms(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_OUT)
