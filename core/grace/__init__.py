"""GRACE and land-surface-model products (:mod:`.products`: CSR/JPL mascons, GLDAS/FLDAS as distributed),
the weighted downscaling of Liu et al. 2024 (:mod:`.downscaling`) and the groundwater storage anomaly by
water balance (:mod:`.gwsa`)."""
