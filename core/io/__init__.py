"""Infrastructure shared by every method: errors, dates, raster I/O, windows, task runner.

* :mod:`.errors` — ``TimeSeriesError`` (bad input, one-line message), ``Cancelled``, ``DaskUnavailable``;
* :mod:`.dates` — date parsing (``YYYY-MM-DD``, ``YYYYMMDD``, ``DYYYYMMDD``, CF time), month indices;
* :mod:`.rasters` — the time-series raster convention, opening/reading rasters, the atomic ``RasterWriter``;
* :mod:`.windows` — row blocks / windows under ``MEMORY_LIMIT_MB`` and the window-task contract;
* :mod:`.tasks` — running pure window tasks here or on a ``dask.distributed`` scheduler.
"""
