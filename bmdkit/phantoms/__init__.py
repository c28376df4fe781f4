"""Physical phantoms of the hip: 3D bone, rendered as radiographs, measured as by DXA.

SYNTHETIC DATA. The phantoms are made for demonstration and testing, not
clinical radiographs; no accuracy on them is evidence about real radiographs.

Modules: :mod:`~bmdkit.phantoms.solids` (shapes and their exact path lengths
along AP rays, bone as a cortical shell around a trabecular interior),
:mod:`~bmdkit.phantoms.anatomy` (a subject's femora, pelvis, lower spine and
soft tissue, and their projection), :mod:`~bmdkit.phantoms.population`
(metadata -> bone, geometry and soft tissue, calibrated to published
references; each film's positioning and exposure),
:mod:`~bmdkit.phantoms.render` (Beer-Lambert attenuation, scatter, blur,
noise, detector) and :mod:`~bmdkit.phantoms.dxa` (the femoral-neck and
total-hip areal BMD of the same bone). :func:`bmdkit.datasets.make_synthetic_cohort`
writes them as a cohort.
"""

from bmdkit.phantoms.dxa import measure, neck_box, roi_mask
from bmdkit.phantoms.population import draw_metadata, draw_population, draw_positioning
from bmdkit.phantoms.render import FILM_MM, Film, film_shape, render, simulate

__all__ = ["FILM_MM", "Film", "draw_metadata", "draw_population", "draw_positioning",
           "film_shape", "measure", "neck_box", "render", "roi_mask", "simulate"]
