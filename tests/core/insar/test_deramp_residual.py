"""Residual variance about the fitted surface, per right-hand side (the GACOS table's detrended standard deviations)."""

import numpy as np

from subsidence_toolkit.core.insar import deramp


def test_residual_variance_uses_the_surface_of_its_own_right_hand_side():
    rng = np.random.default_rng(3)
    h, w, mode = 30, 40, deramp.DERAMP_LINEAR
    X = deramp.design(0, h, 0, w, h, w, mode)
    # two right-hand sides on the same pixels with different planes and different noise levels
    before = (X @ np.array([5.0, 2.0, -1.0])).reshape(h, w) + rng.normal(0, 0.5, (h, w))
    after = (X @ np.array([-3.0, 0.5, 4.0])).reshape(h, w) + rng.normal(0, 0.2, (h, w))
    normals = deramp.empty_normals(1, mode, n_rhs=2)
    reliable = np.ones((1, h, w), dtype=bool)
    deramp.accumulate(normals, [before[None], after[None]], reliable, 0, 0, h, w, mode)
    for rhs, values in enumerate((before, after)):
        # independent reference: numpy least squares of this right-hand side alone
        coef = np.linalg.lstsq(X, values.ravel(), rcond=None)[0]
        expected = np.mean((values.ravel() - X @ coef) ** 2)
        got = deramp.residual_variance(normals, np.array([np.sum(values**2)]), rhs=rhs)[0]
        assert abs(got - expected) <= 1e-9 * np.sum(values**2)
