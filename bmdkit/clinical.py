"""Clinical reference values: T-scores, device conversion and WHO categories.

Only the constants the core needs live here for now; the full T-score API is
built on them.
"""

from __future__ import annotations

#: NHANES III femoral neck reference, women aged 20-29, Hologic scale (Looker et al. 1998).
NHANES3_FEMORAL_NECK_MEAN = 0.858
NHANES3_FEMORAL_NECK_SD = 0.120

#: Lu et al. 2001 femoral neck standardisation: sBMD = a * device + b.
SBMD_FEMORAL_NECK = {"hologic": (1.087, 0.019), "lunar": (0.939, -0.023), "norland": None}

#: Femoral neck BMD at T = -1 on a GE Lunar device (the XAttn-BMD screening threshold).
LUNAR_T_MINUS_1_FEMORAL_NECK = 0.899
