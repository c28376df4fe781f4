"""Who the phantoms are: metadata -> bone, geometry, soft tissue; and each film's setting.

Every constant below is fixed from a published reference (docs/data.md,
"The SYNTHETIC demo cohort", lists them with their sources); none was tuned
towards a model's score. Units: mm, mg/cm³ hydroxyapatite (HA), g/cm².

The femoral-neck areal BMD a subject is built to have on average is the
NHANES III non-Hispanic white mean for their sex and age (Looker et al.
1998; Hologic scale, carried to the device scale of :mod:`bmdkit.clinical`,
Lunar by default, by the cross-calibration of Lu et al. 2001), moved by
body mass index, physical activity, diet, current smoking and heavy
drinking. The neck's integral volumetric density is that areal BMD over the
mean chord of a reference neck (``pi r / 2`` for a circular neck of radius
``r``), times a residual of log-SD :data:`RESIDUAL_LOG_SD`; every other
region's density follows it through a one-factor model with the regional
correlations of the literature. The areal BMD DXA then measures on the
rendered bone also depends on the subject's own neck size (bigger bones give
a higher areal BMD at the same volumetric density), positioning and texture.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bmdkit.clinical import convert_bmd
from bmdkit.phantoms.anatomy import REGIONS, SIDES

__all__ = ["NHANES_FEMORAL_NECK", "blank_some", "draw_metadata", "draw_population", "draw_positioning"]

SMOKING = np.array(["never", "former", "current"], dtype=object)
#: Femoral neck BMD of non-Hispanic whites aged 70-79, NHANES III (Looker et al. 1998),
#: Hologic scale: sex -> (mean at 75 years, change per year of age, SD), g/cm².
NHANES_FEMORAL_NECK = {"F": (0.653, -0.0060, 0.110), "M": (0.775, -0.0045, 0.130)}
#: Log-SD of the neck's volumetric density left after the metadata (see module docstring).
RESIDUAL_LOG_SD = 0.13
#: Reference adult: sex -> height (cm) at which bone_scale is 1, and the bone sizes in mm
#: (head radius, narrowest neck radius, head-to-shaft neck length, shaft radius,
#: distance between the hip-joint centres).
REFERENCE = {
    "F": dict(height=159.0, head_radius=22.0, neck_radius=14.5, neck_length=50.0,
              shaft_radius=14.0, hip_separation=172.0, neck_shaft_angle=129.0),
    "M": dict(height=172.0, head_radius=24.5, neck_radius=16.5, neck_length=55.0,
              shaft_radius=16.0, hip_separation=168.0, neck_shaft_angle=127.0),
}
#: Region -> (integral density / the neck's, trabecular / integral, loading on the shared
#: bone status): correlations with the neck sqrt(0.9 x loading): trochanter 0.82,
#: intertrochanter and head 0.87-0.9, shaft and pelvis 0.73, lumbar spine 0.67.
REGION_DENSITY = {
    "neck": (1.00, 0.35, 0.90), "head": (1.25, 0.60, 0.85),
    "trochanter": (0.80, 0.50, 0.75), "intertrochanter": (1.05, 0.40, 0.85),
    "shaft": (1.60, 0.03, 0.60), "pelvis": (0.85, 0.45, 0.60), "spine": (0.55, 0.60, 0.50),
}
CORTICAL_DENSITY = 1050.0  # mg/cm³ HA, cortical tissue mineral density


def draw_metadata(n, rng):
    """Metadata resembling the Hertfordshire Cohort Study's XAttn-BMD sample (n = 233).

    Age at x-ray ~ U(71.6, 80.6), age at the DXA scan a few months later,
    48.9 % female, sex-specific height and BMI (weight = BMI x height²),
    alcohol (units/week; none for 35 % of women and 15 % of men, else
    log-normal), physical activity (0-100, falling with age), diet quality
    (z-score), smoking never/former/current.
    """
    female = rng.random(n) < 0.489
    age_xray = rng.uniform(71.6, 80.6, n)
    age_bmd = age_xray + np.abs(rng.normal(0.0, 0.3, n))
    height = np.where(female, rng.normal(159.0, 6.0, n), rng.normal(172.0, 6.5, n))
    bmi = np.clip(np.where(female, rng.normal(27.8, 4.8, n), rng.normal(27.4, 3.8, n)), 17, 45)
    weight = bmi * (height / 100) ** 2
    drinks = rng.random(n) > np.where(female, 0.35, 0.15)
    alcohol = np.where(drinks, rng.lognormal(np.where(female, 1.2, 2.1), 0.8), 0.0)
    activity = np.clip(rng.normal(60 - 1.5 * (age_xray - 76), 15, n), 0, 100)
    diet = rng.normal(0.0, 1.0, n)
    smoking = SMOKING[np.where(
        female, _categorical(rng, n, [0.60, 0.32, 0.08]), _categorical(rng, n, [0.38, 0.52, 0.10]))]
    return pd.DataFrame({
        "age_at_xray": age_xray.round(1),
        "age_at_bmd": age_bmd.round(1),
        "height_cm": height.round(1),
        "weight_kg": weight.round(1),
        "bmi": bmi.round(1),
        "alcohol_units_per_week": alcohol.round(1),
        "physical_activity": activity.round(0),
        "diet_quality": diet.round(2),
        "sex": np.where(female, "F", "M").astype(object),
        "smoking": smoking,
    })


def blank_some(meta, rng, fraction=0.02):
    """``meta`` with a few lifestyle values set missing, as in real cohorts."""
    meta = meta.copy()
    for column in ("alcohol_units_per_week", "physical_activity", "diet_quality", "smoking"):
        missing = rng.random(len(meta)) < fraction
        meta.loc[missing, column] = np.nan if meta[column].dtype != object else None
    return meta


def _categorical(rng, n, p):
    return np.searchsorted(np.cumsum(p), rng.random(n) * np.sum(p))


def expected_neck_bmd(meta, device="lunar"):
    """Femoral-neck areal BMD (g/cm², ``device`` scale) a subject is built to have on average."""
    female = (meta["sex"] == "F").to_numpy()
    mean, slope, _ = (np.where(female, *pair) for pair in zip(NHANES_FEMORAL_NECK["F"],
                                                              NHANES_FEMORAL_NECK["M"]))
    hologic = mean + slope * (meta["age_at_bmd"].to_numpy() - 75.0)
    base = convert_bmd(hologic, from_device="hologic", to_device=device)
    lifestyle = (
        0.007 * (meta["bmi"].to_numpy() - np.where(female, 27.8, 27.4))
        + 0.0008 * (meta["physical_activity"].to_numpy() - 60)
        + 0.008 * meta["diet_quality"].to_numpy()
        - 0.03 * (meta["smoking"] == "current").to_numpy()
        - 0.0015 * np.clip(meta["alcohol_units_per_week"].to_numpy() - 14, 0, None)
    )
    return base + lifestyle


def _per_sex(meta, key):
    return np.where((meta["sex"] == "F").to_numpy(), REFERENCE["F"][key], REFERENCE["M"][key])


def draw_population(meta, rng, device="lunar"):
    """Per subject: bone sizes, regional densities of both hips, soft tissue, texture.

    Parameters
    ----------
    meta : pandas.DataFrame
        From :func:`draw_metadata` (complete, before any value is blanked).
    rng : numpy.random.Generator
    device : str, default="lunar"
        DXA device scale of the calibration (:func:`bmdkit.clinical.convert_bmd`).

    Returns
    -------
    pandas.DataFrame
        One row per subject; lengths in mm, densities in mg/cm³ HA.
    """
    n = len(meta)
    female = (meta["sex"] == "F").to_numpy()
    height = meta["height_cm"].to_numpy()
    scale = height / _per_sex(meta, "height") * np.exp(rng.normal(0, 0.04, n))
    p = pd.DataFrame({"bone_scale": scale})
    for key, log_sd in (("head_radius", 0.03), ("neck_radius", 0.05), ("neck_length", 0.06),
                        ("shaft_radius", 0.05), ("hip_separation", 0.04)):
        p[key] = _per_sex(meta, key) * scale * np.exp(rng.normal(0, log_sd, n))
    p["neck_shaft_angle"] = _per_sex(meta, "neck_shaft_angle") + rng.normal(0, 5.0, n)
    p["cortical_density"] = CORTICAL_DENSITY * np.exp(rng.normal(0, 0.02, n))

    # the neck's integral density: expected areal BMD / mean chord of the reference neck (cm)
    chord = np.pi * _per_sex(meta, "neck_radius") / 2 / 10
    neck = expected_neck_bmd(meta, device) / chord * 1000  # mg/cm³
    status = rng.normal(0, 1, n)  # the subject's bone status, shared by every region
    keys = [(f"{region}_{side}", region) for side in SIDES for region in REGIONS]
    for key, region in [*keys, ("spine", "spine")]:
        ratio, trabecular, loading = REGION_DENSITY[region]
        residual = np.sqrt(loading) * status + np.sqrt(1 - loading) * rng.normal(0, 1, n)
        p[f"vbmd_{key}"] = ratio * neck * np.exp(RESIDUAL_LOG_SD * residual)
        p[f"trabecular_{key}"] = trabecular * p[f"vbmd_{key}"]

    # soft tissue: body fat % from BMI, age and sex (Deurenberg et al. 1991) as a fat layer
    bmi, age = meta["bmi"].to_numpy(), meta["age_at_xray"].to_numpy()
    fat_fraction = np.clip(1.2 * bmi + 0.23 * age - 10.8 * ~female - 5.4, 5, 60) / 100
    p["body_depth"] = np.where(female, 195.0, 205.0) * (bmi / 27) ** 0.8 * np.exp(
        rng.normal(0, 0.05, n))
    p["body_width"] = np.where(female, 350.0, 340.0) * (bmi / 27) ** 0.5 * np.exp(
        rng.normal(0, 0.04, n))
    a, b = p["body_width"] / 2, p["body_depth"] / 2
    p["fat_thickness"] = ((a + b) - np.sqrt((a + b) ** 2 - 4 * fat_fraction * a * b)) / 2
    p["thigh_width"] = 155.0 * (bmi / 27) ** 0.5
    p["thigh_depth"] = 145.0 * (bmi / 27) ** 0.6
    p["texture_seed"] = rng.integers(0, 2**31, n)
    p["texture_amplitude"] = 0.15
    return p


def draw_positioning(n, rng):
    """Per film: femoral rotation and abduction of each hip, pelvic tilt, shift, magnification,
    collimation (mm in from each edge), and the exposure and reader (automatic exposure
    control error, heel effect, dynamic-range compression, the reader's gain and offset).

    Angles in degrees, shifts in mm.
    """
    frame = pd.DataFrame({
        "rotation_right": rng.normal(2.0, 9.0, n),
        "rotation_left": rng.normal(2.0, 9.0, n),
        "abduction_right": rng.normal(0.0, 4.0, n),
        "abduction_left": rng.normal(0.0, 4.0, n),
        "pelvic_tilt": rng.normal(0.0, 6.0, n),
        "shift_x": rng.normal(0.0, 10.0, n),
        "shift_y": rng.normal(0.0, 10.0, n),
        "magnification": rng.uniform(1.10, 1.22, n),
        "aec_error": np.exp(rng.normal(0.0, 0.10, n)),
        "gain": rng.uniform(0.85, 1.15, n),
        "offset": rng.uniform(4000.0, 9000.0, n),
        "collimation_top": rng.uniform(0.0, 40.0, n),
        "collimation_bottom": rng.uniform(0.0, 40.0, n),
        "collimation_left": rng.uniform(0.0, 40.0, n),
        "collimation_right": rng.uniform(0.0, 40.0, n),
        "heel": rng.uniform(-0.05, 0.05, n),
        "drc": rng.uniform(0.4, 0.7, n),
    })
    return frame
