"""Numerical core of the Subsidence Toolkit: numpy / scipy / pandas / GDAL only, no QGIS.

One module per method; every function works on arrays or row blocks and can be
used as a library outside QGIS.
"""
