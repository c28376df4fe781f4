"""Clinical reference values: T-scores, device conversion and WHO categories.

A T-score compares a BMD with the young-adult reference:
``T = (BMD - mean) / SD``. The NHANES III reference (Looker et al. 1998) was
measured on Hologic densitometers, so a BMD from another device is first
carried to the Hologic scale through the standardised BMD (sBMD) of the
International Committee for Standards in Bone Measurement:
``sBMD = slope * device_BMD + intercept`` (femoral neck: Lu et al. 2001;
total hip: Hui et al. 1997). All values below are documented defaults; every
function takes explicit numbers instead of a name to override them.

References
----------
Looker AC et al. Updated data on proximal femur bone mineral levels of US
adults. Osteoporos Int 1998;8:468-489.
Lu Y, Fuerst T, Hui S, Genant HK. Standardization of bone mineral density at
femoral neck, trochanter and Ward's triangle. Osteoporos Int 2001;12:438-444.
Hui SL et al. Universal standardization of bone density measurements.
J Bone Miner Res 1997;12:1463-1470.
WHO Study Group. Assessment of fracture risk and its application to screening
for postmenopausal osteoporosis. WHO Technical Report Series 843, 1994.
"""

from __future__ import annotations

import numpy as np

from bmdkit.errors import InputError, ParameterError

__all__ = [
    "REFERENCES", "SBMD_EQUATIONS", "WHO_CATEGORIES", "WHO_T_SCORE_CUTOFFS",
    "bmd_at_t_score", "convert_bmd", "screening_thresholds", "t_score", "who_category",
]

#: NHANES III femoral neck reference, women aged 20-29, Hologic scale (Looker et al. 1998).
NHANES3_FEMORAL_NECK_MEAN = 0.858
NHANES3_FEMORAL_NECK_SD = 0.120

#: Lu et al. 2001 femoral neck standardisation: sBMD = a * device + b.
#: Norland's (0.985, 0.006) as tabulated from Lu et al. 2001 in the University of
#: Washington bone physiology course notes (courses.washington.edu/bonephys/opBMDs.html).
SBMD_FEMORAL_NECK = {"hologic": (1.087, 0.019), "lunar": (0.939, -0.023),
                     "norland": (0.985, 0.006)}

#: Femoral neck BMD at T = -1 on a GE Lunar device (the XAttn-BMD screening threshold).
LUNAR_T_MINUS_1_FEMORAL_NECK = 0.899

#: Young-adult references: name -> site -> (mean, SD) in g/cm², and the device scale.
REFERENCES = {
    "nhanes3_female": {
        "device": "hologic",
        "femoral_neck": (NHANES3_FEMORAL_NECK_MEAN, NHANES3_FEMORAL_NECK_SD),
        "total_hip": (0.942, 0.122),
    },
}

#: sBMD equations: site -> device -> (slope, intercept) (Lu et al. 2001; Hui et al. 1997).
SBMD_EQUATIONS = {
    "femoral_neck": SBMD_FEMORAL_NECK,
    "total_hip": {"hologic": (1.008, 0.006), "lunar": (0.979, -0.031),
                  "norland": (1.012, 0.026)},
}

#: WHO categories from low to high BMD, and the T-score cut-offs between them.
WHO_CATEGORIES = ("osteoporosis", "osteopenia", "normal")
WHO_T_SCORE_CUTOFFS = (-2.5, -1.0)


def _equation(device, site):
    """(slope, intercept) of ``device`` at ``site``; a tuple passes through."""
    if not isinstance(device, str):
        slope, intercept = device
        return float(slope), float(intercept)
    if site not in SBMD_EQUATIONS:
        raise ParameterError(f"no sBMD equations for site {site!r}; known: {sorted(SBMD_EQUATIONS)}")
    equations = SBMD_EQUATIONS[site]
    if device not in equations:
        raise ParameterError(
            f"unknown device {device!r} for {site}; known: {sorted(equations)}, "
            "or pass (slope, intercept) of sBMD = slope * BMD + intercept"
        )
    return equations[device]


def _reference(reference, site):
    """(mean, SD, device) of a named reference, or of an explicit (mean, SD[, device])."""
    if not isinstance(reference, str):
        mean, sd, *device = reference
        return float(mean), float(sd), (device[0] if device else "hologic")
    if reference not in REFERENCES:
        raise ParameterError(f"unknown reference {reference!r}; known: {sorted(REFERENCES)}")
    values = REFERENCES[reference]
    if site not in values:
        raise ParameterError(f"reference {reference!r} has no site {site!r}")
    mean, sd = values[site]
    return mean, sd, values["device"]


def convert_bmd(bmd, *, from_device, to_device, site="femoral_neck"):
    """BMD measured on one densitometer expressed on another's scale, via sBMD.

    Parameters
    ----------
    bmd : float or array-like
        BMD in g/cm².
    from_device, to_device : {"hologic", "lunar", "norland"} or (slope, intercept)
        Device names, or explicit sBMD equations ``sBMD = slope * BMD + intercept``.
    site : {"femoral_neck", "total_hip"}, default="femoral_neck"

    Returns
    -------
    float or ndarray

    Examples
    --------
    >>> round(convert_bmd(0.738, from_device="hologic", to_device="lunar"), 3)
    0.899
    """
    a_from, b_from = _equation(from_device, site)
    a_to, b_to = _equation(to_device, site)
    sbmd = a_from * np.asarray(bmd, dtype=np.float64) + b_from
    return _scalar((sbmd - b_to) / a_to)


def t_score(bmd, *, site="femoral_neck", device="lunar", reference="nhanes3_female"):
    """T-score of a BMD against a young-adult reference.

    The BMD is carried to the reference's device scale (NHANES III: Hologic)
    with :func:`convert_bmd`, then ``T = (BMD - mean) / SD``.

    Parameters
    ----------
    bmd : float or array-like
        BMD in g/cm² measured on ``device``.
    site : {"femoral_neck", "total_hip"}, default="femoral_neck"
    device : {"lunar", "hologic", "norland"} or (slope, intercept), default="lunar"
    reference : str or (mean, SD) or (mean, SD, device), default="nhanes3_female"
        A name in :data:`REFERENCES`, or explicit values (device defaults to Hologic).

    Returns
    -------
    float or ndarray

    Examples
    --------
    >>> round(t_score(0.899), 2), round(t_score(0.738, device="hologic"), 2)
    (-1.0, -1.0)
    """
    mean, sd, ref_device = _reference(reference, site)
    on_reference_scale = convert_bmd(bmd, from_device=device, to_device=ref_device, site=site)
    return _scalar((np.asarray(on_reference_scale) - mean) / sd)


def bmd_at_t_score(t, *, site="femoral_neck", device="lunar", reference="nhanes3_female"):
    """BMD (g/cm²) on ``device`` whose T-score is ``t``: the inverse of :func:`t_score`.

    Examples
    --------
    >>> [round(bmd_at_t_score(t), 3) for t in (0.0, -1.0, -2.5)]
    [1.038, 0.899, 0.691]
    """
    mean, sd, ref_device = _reference(reference, site)
    on_reference_scale = mean + sd * np.asarray(t, dtype=np.float64)
    return convert_bmd(on_reference_scale, from_device=ref_device, to_device=device, site=site)


def who_category(t, *, cutoffs=WHO_T_SCORE_CUTOFFS):
    """WHO diagnostic category of T-scores.

    Osteoporosis: ``T <= -2.5``; osteopenia: ``-2.5 < T < -1``; normal: ``T >= -1``.

    Parameters
    ----------
    t : float or array-like
    cutoffs : (float, float), default=(-2.5, -1.0)

    Returns
    -------
    str or ndarray of str
        Values from :data:`WHO_CATEGORIES`.

    Examples
    --------
    >>> who_category([-3.0, -2.5, -1.5, -1.0, 0.5]).tolist()
    ['osteoporosis', 'osteoporosis', 'osteopenia', 'normal', 'normal']
    """
    t = np.asarray(t, dtype=np.float64)
    if np.isnan(t).any():
        raise InputError("T-scores contain NaN")
    low, high = cutoffs
    index = np.where(t <= low, 0, np.where(t < high, 1, 2))
    categories = np.asarray(WHO_CATEGORIES, dtype=object)[index]
    return categories if t.ndim else str(categories)


def screening_thresholds(t_scores=WHO_T_SCORE_CUTOFFS[::-1], *, site="femoral_neck",
                         device="lunar", reference="nhanes3_female"):
    """BMD screening thresholds at the given T-scores, named ``"T=-1.0"`` etc.

    The defaults are the XAttn-BMD protocol: T = -1 (0.899 g/cm²) and
    T = -2.5 (0.691 g/cm²) on a GE Lunar femoral neck.

    Examples
    --------
    >>> {k: round(v, 3) for k, v in screening_thresholds().items()}
    {'T=-1.0': 0.899, 'T=-2.5': 0.691}
    """
    return {
        f"T={float(t):.1f}": float(bmd_at_t_score(t, site=site, device=device, reference=reference))
        for t in t_scores
    }


def _scalar(value):
    value = np.asarray(value, dtype=np.float64)
    return float(value) if value.ndim == 0 else value
