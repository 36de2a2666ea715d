"""Small deterministic inputs for tests (importable from every test: tests/ is on sys.path via conftest)."""

import datetime as dt

import numpy as np
from osgeo import gdal, osr


def sentinel1_dates(start=dt.date(2019, 11, 3), n=30, revisit=12, gaps=(7, 8, 19), seed=0):
    """An irregular Sentinel-1 epoch list: 12-day revisit with some acquisitions missing."""
    out, d, i = [], start, 0
    while len(out) < n:
        if i not in gaps:
            out.append(d)
        d += dt.timedelta(days=revisit)
        i += 1
    return out


def write_stack(
    path,
    array,
    dates=None,
    descriptions=None,
    metadata=None,
    epsg=32649,
    origin=(500000.0, 4000000.0),
    pixel=30.0,
    nodata=None,
    dtype=gdal.GDT_Float32,
):
    """Write a (bands, rows, cols) array as GeoTIFF; band descriptions from ``dates`` (YYYY-MM-DD) or text."""
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[None]
    nb, ny, nx = array.shape
    ds = gdal.GetDriverByName("GTiff").Create(str(path), nx, ny, nb, dtype)
    ds.SetGeoTransform((origin[0], pixel, 0, origin[1], 0, -pixel))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    ds.SetProjection(srs.ExportToWkt())
    for i in range(nb):
        b = ds.GetRasterBand(i + 1)
        if nodata is not None:
            b.SetNoDataValue(nodata)
        b.WriteArray(array[i])
        if dates is not None:
            b.SetDescription(dates[i].strftime("%Y-%m-%d"))
        elif descriptions is not None:
            b.SetDescription(descriptions[i])
        if metadata is not None and metadata[i]:
            b.SetMetadata(metadata[i])
    ds = None
    return str(path)


def smooth_stack(dates, ny=6, nx=7, seed=1, nan_fraction=0.1):
    """A stack with a trend + seasonal term per pixel and random NaN gaps (mm)."""
    rng = np.random.default_rng(seed)
    t = np.array([(d - dates[0]).days for d in dates], float) / 365.25
    rate = rng.uniform(-60, 10, (ny, nx))
    amp = rng.uniform(0, 10, (ny, nx))
    phase = rng.uniform(0, 2 * np.pi, (ny, nx))
    data = rate[None] * t[:, None, None] + amp[None] * np.sin(2 * np.pi * t[:, None, None] + phase[None])
    data += rng.normal(0, 0.5, data.shape)
    mask = rng.random(data.shape) < nan_fraction
    data[mask] = np.nan
    return data


def write_band(path, geotransform, array, epsg, nodata=None, dtype=gdal.GDT_Float32):
    """One-band GeoTIFF with the given geotransform and EPSG code (test rasters on any grid)."""
    ds = gdal.GetDriverByName("GTiff").Create(str(path), array.shape[1], array.shape[0], 1, dtype)
    ds.SetGeoTransform(tuple(geotransform))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    ds.SetProjection(srs.ExportToWkt())
    if nodata is not None:
        ds.GetRasterBand(1).SetNoDataValue(nodata)
    ds.GetRasterBand(1).WriteArray(array)
    ds = None
    return str(path)


def assert_equal_to_float32_rounding(actual, expected, n_terms, err_msg=""):
    """``actual`` equals ``expected`` up to the reordering of float32 sums of ``n_terms`` terms.

    A float32 GEMM (the unweighted SBAS solve) may add each pixel's terms in an order that depends on
    the call's shape and on the column's position in it, and that order depends on the CPU's BLAS
    kernel (OpenBLAS's Haswell sgemm on AMD EPYC does; others do not). Two orders of the same n-term
    sum differ by at most about n float32 roundings of the largest magnitude involved, so the
    tolerance is ``n_terms * eps32 * max|expected|`` (eps32 = 2**-23 >= two unit roundoffs); a wrong
    window or pixel would be off by whole mm. NaN positions must agree exactly.
    """
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, err_msg
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), err_msg=err_msg)
    scale = float(np.nanmax(np.abs(expected))) if np.isfinite(expected).any() else 0.0
    atol = n_terms * float(np.finfo(np.float32).eps) * scale
    np.testing.assert_allclose(actual, expected, rtol=0, atol=atol, equal_nan=True, err_msg=err_msg)
