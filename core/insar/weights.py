"""Observation weights of the SBAS solve from coherence: ``gamma`` or the inverse phase variance."""

import numpy as np

# np.trapezoid since numpy 2.0; np.trapz (numpy 1.x) was removed in numpy 2.4
_trapezoid = getattr(np, "trapezoid", None) or np.trapz

WEIGHT_NONE = "none"
WEIGHT_COHERENCE = "coherence"
WEIGHT_VARIANCE = "variance"
WEIGHTINGS = (WEIGHT_NONE, WEIGHT_COHERENCE, WEIGHT_VARIANCE)


#: Default number of independent looks for the phase-variance weights when the
#: product's metadata do not say (LiCSAR / HyP3 multilook 20x4 = 80 looks; the
#: effective number of independent looks is ~1/2 to 1/4 of that).
DEFAULT_LOOKS = 20
MIN_WEIGHT_COHERENCE = 0.05

_PHASE_VARIANCE_CACHE = {}


def phase_variance_lut(looks, step=0.005):
    """Variance of the multilooked phase vs coherence (Tough et al. 1995 eq. 3-4 PDF).

    ``pdf(phi) = (1-g^2)^L / (2 pi) 2F1(L, 1; 1/2; b^2)
    + G(L+1/2) (1-g^2)^L b / (2 sqrt(pi) G(L) (1-b^2)^(L+1/2))``, ``b = g cos(phi)``,
    integrated numerically over (-pi, pi). Non-finite entries fall back to
    the Cramer-Rao bound. Returns (coherence grid, variance).
    """
    from scipy.special import gammaln, hyp2f1

    L = float(min(max(looks, 1), 80))
    key = (L, step)
    if key in _PHASE_VARIANCE_CACHE:
        return _PHASE_VARIANCE_CACHE[key]
    g = np.arange(0.0, 1.0 + step / 2, step)
    g = np.clip(g, 0.0, 0.999)
    phi = np.linspace(-np.pi, np.pi, 2001)
    gg, pp = np.meshgrid(g, phi, indexing="ij")
    beta = gg * np.cos(pp)
    with np.errstate(all="ignore"):
        a = (1 - gg**2) ** L
        t1 = a / (2 * np.pi) * hyp2f1(L, 1.0, 0.5, beta**2)
        t2 = a * beta * np.exp(gammaln(L + 0.5) - gammaln(L)) / (2 * np.sqrt(np.pi) * (1 - beta**2) ** (L + 0.5))
        pdf = t1 + t2
        var = _trapezoid(pdf * pp**2, phi, axis=1) / _trapezoid(pdf, phi, axis=1)
        crlb = (1 - g**2) / (2 * L * np.maximum(g, 1e-3) ** 2)
    bad = ~np.isfinite(var) | (var <= 0)
    var[bad] = np.minimum(crlb[bad], np.pi**2 / 3)
    _PHASE_VARIANCE_CACHE[key] = (g, var)
    return g, var


def coherence_weights(coherence, weighting, looks=DEFAULT_LOOKS):
    """Observation weights from coherence (NaN where coherence is NaN)."""
    coh = np.asarray(coherence, dtype=np.float64)
    if weighting == WEIGHT_COHERENCE:
        return np.clip(coh, MIN_WEIGHT_COHERENCE, 1.0)
    if weighting == WEIGHT_VARIANCE:
        try:
            L = float(looks) if looks is not None and float(looks) > 0 else DEFAULT_LOOKS
        except (TypeError, ValueError):
            L = DEFAULT_LOOKS
        g, var = phase_variance_lut(L)
        c = np.clip(coh, MIN_WEIGHT_COHERENCE, 0.999)
        return 1.0 / np.interp(c, g, var)
    raise ValueError("unknown weighting %r (use one of %s)" % (weighting, ", ".join(WEIGHTINGS)))
