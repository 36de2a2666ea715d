"""Per-pixel time series: resampling irregular epochs to regular dates (:mod:`.resample`) and reading a
pixel's or a polygon's series from any time-series raster (:mod:`.pixel_series`, used by the viewer)."""
