"""Cohorts: the SYNTHETIC demo cohort and loading a user's CSV.

The demo cohort's images are hip and pelvis films rendered from 3D phantoms
(:mod:`bmdkit.phantoms`) for demonstration and testing, not clinical radiographs.
"""

from bmdkit.datasets.cohort import load_cohort
from bmdkit.datasets.synthetic import demo_data_home, load_demo_cohort, make_synthetic_cohort

__all__ = ["demo_data_home", "load_cohort", "load_demo_cohort", "make_synthetic_cohort"]
