"""Numerical core of the Subsidence Toolkit: numpy / scipy / pandas / GDAL only, never QGIS or Qt.

Grouped by what it is for (the same groups as the Processing Toolbox):

* :mod:`.io` — infrastructure every method uses: dates, raster open/read/write (atomic writer),
  window planning under a memory cap, the local/Dask task runner, the error types;
* :mod:`.insar` — interferogram stacks: pairs and network, SBAS solver kernels, the streaming driver;
* :mod:`.grace` — GRACE / land-surface-model products, weighted downscaling, groundwater anomaly;
* :mod:`.timeseries` — per-pixel series: temporal resampling, reading pixel / polygon series;
* :mod:`.stats` — natural breaks, Geodetector, lagged correlation, validation, class sampling;
* :mod:`.reports` — HTML reports built from the statistics.

Methods are functions on arrays and row blocks; the drivers that read and write files stream them
in windows (:mod:`.io.windows` documents the window/task contract).
"""
