"""Draw SYNTHETIC phantom films beside real radiographs, at the same display settings.

Top row: real AP pelvis radiographs (``../shared/data/real/ddh_xray``, CC BY 4.0,
Fraiwan et al. 2022; paediatric) and phantom AP pelvis films. Middle row: the
right hip of two of those real films (the image's left half) and phantom AP
hip films. Every image is shown as the estimators see it: read by
:func:`bmdkit.io.read_image`, contrast normalised by
:func:`bmdkit.io.normalise_contrast` (0.5-99.5 percentile window), grey map
0-1. Bottom row: the truth of the phantoms shown above it — the mineral-only
projection (``bone_path``, g/cm²) with the femoral-neck ROI that defines the
target. Writes docs/img/real_vs_phantoms.png.

Run:  .venv/bin/python examples/plot_real_vs_phantoms.py [out.png]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Polygon  # noqa: E402

from bmdkit.datasets import make_synthetic_cohort  # noqa: E402
from bmdkit.io import normalise_contrast, read_image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "img" / "real_vs_phantoms.png"
REAL = ROOT.parent / "shared" / "data" / "real" / "ddh_xray"
REAL_FILMS = ("331_DDH_10.jpg", "331_DDH_107.jpg")


def _show(ax, image, title):
    ax.imshow(normalise_contrast(image), cmap="gray", vmin=0, vmax=1)
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def plot_phantoms(out=DEFAULT_OUT, image_size=512, random_state=0, real=REAL):
    """Save the comparison figure to ``out`` and return it."""
    fig, axes = plt.subplots(3, 4, figsize=(11, 8.6))
    real_films = [read_image(Path(real) / name) for name in REAL_FILMS]
    with tempfile.TemporaryDirectory() as folder:
        pelvis, _, truth_pelvis = make_synthetic_cohort(
            n=2, image_size=image_size, random_state=random_state, out_dir=f"{folder}/pelvis",
            view="pelvis", return_truth=True)
        hip, _, truth_hip = make_synthetic_cohort(
            n=2, image_size=image_size, random_state=random_state, out_dir=f"{folder}/hip",
            return_truth=True)
        for k, (name, film) in enumerate(zip(REAL_FILMS, real_films)):
            _show(axes[0, k], film, f"REAL AP pelvis ({name}, child)")
            _show(axes[1, k], film[:, : film.shape[1] // 2], "REAL: its right hip (crop)")
        for k in range(2):
            row_p, row_h = pelvis.iloc[k], hip.iloc[k]
            _show(axes[0, 2 + k], read_image(row_p["image_path"]),
                  f"SYNTHETIC pelvis: {row_p['sex']}, {row_p['age_at_xray']:.0f} y, "
                  f"BMI {row_p['bmi']:.0f}")
            _show(axes[1, 2 + k], read_image(row_h["image_path"]),
                  f"SYNTHETIC hip: {row_h['sex']}, BMI {row_h['bmi']:.0f}")
        for k, (truth, label) in enumerate([(truth_pelvis, "pelvis"), (truth_hip, "hip")]):
            for j in range(2):
                ax = axes[2, 2 * k + j]
                bone = read_image(truth["bone_path"][j])
                shown = ax.imshow(bone, cmap="magma", vmin=0)
                ax.add_patch(Polygon(truth["neck_roi"][j], closed=True, fill=False,
                                     edgecolor="cyan", linewidth=1))
                ax.set_title(f"{label} {j + 1}: mineral (g/cm²); neck ROI: "
                             f"{truth['femoral_neck_bmd'][j]:.3f}", fontsize=8)
                ax.axis("off")
                fig.colorbar(shown, ax=ax, fraction=0.035, pad=0.01)
    fig.suptitle("Real radiographs beside SYNTHETIC phantoms (bmdkit demo cohort v2), "
                 "same display settings — the phantoms are not clinical images", fontsize=10)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return fig


if __name__ == "__main__":
    plot_phantoms(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_OUT)
