"""Units of interferometric observations: radians, metres or mm of line-of-sight displacement."""

import math

from ..io.rasters import UNITS_MM

#: Sentinel-1 C-band radar wavelength (m)
SENTINEL1_WAVELENGTH_M = 0.05546576

UNITS_RADIANS = "radians"
UNITS_METRES = "m"
INPUT_UNITS = (UNITS_RADIANS, UNITS_METRES, UNITS_MM)


def los_factor_mm(input_units, wavelength_m, flip_sign=False):
    """Multiplier from input units to LOS mm (positive toward the satellite)."""
    if input_units == UNITS_RADIANS:
        f = -wavelength_m / (4.0 * math.pi) * 1000.0
    elif input_units == UNITS_METRES:
        f = 1000.0
    elif input_units == UNITS_MM:
        f = 1.0
    else:
        raise ValueError("unknown input units %r (use one of %s)" % (input_units, ", ".join(INPUT_UNITS)))
    return -f if flip_sign else f


def radians_per_mm(wavelength_m):
    """Phase (rad) per mm of LOS displacement, for temporal coherence."""
    return 4.0 * math.pi / (wavelength_m * 1000.0)
