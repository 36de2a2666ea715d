"""Writers of tiny NetCDF files with the real layouts of GRACE/GLDAS/FLDAS products (tests, benchmark).

Written with ``scipy.io.netcdf_file`` (NetCDF-3 classic, readable by GDAL's netCDF driver). The
variable names, units, fill values, dimension names, coordinate order (latitude ascending) and
longitude conventions follow the real products (see the project reference note):

* CSR RL06 mascons: ``lwe_thickness(time, lat, lon)`` cm, lon 0..360, ``time`` days since
  2002-01-01 with ``time_bounds(time, bounds)``;
* JPL RL06 mascons: the same plus ``_FillValue`` -99999 and variables ``scale_factor``, ``land_mask``;
* GLDAS Noah monthly: one file per month, ``SoilMoi0_10cm_inst`` ... kg m-2, fill -9999, lon -180..180;
* FLDAS Noah monthly: dimensions ``X``/``Y``, ``SoilMoi00_10cm_tavg`` ... volumetric m3 m-3.
"""

import datetime as dt

import numpy as np
from scipy.io import netcdf_file

GRACE_EPOCH = dt.datetime(2002, 1, 1)


def _days(d, epoch):
    return (d - epoch).total_seconds() / 86400.0


def _coords(f, lat, lon, latname="lat", lonname="lon"):
    f.createDimension(latname, len(lat))
    f.createDimension(lonname, len(lon))
    la = f.createVariable(latname, "d", (latname,))
    la[:] = lat
    la.units = "degrees_north"
    la.long_name = "latitude"
    lo = f.createVariable(lonname, "d", (lonname,))
    lo[:] = lon
    lo.units = "degrees_east"
    lo.long_name = "longitude"


def write_mascon(path, lat, lon, bounds, data_cm, layout="CSR", scale_factor=None, land_mask=None):
    """GRACE mascon file. ``lat`` ascending, ``lon`` 0..360; ``bounds`` list of (start, end) datetimes;
    ``data_cm`` (nt, nlat, nlon) in file order (row 0 = southernmost), NaN -> fill (JPL) / kept (CSR)."""
    f = netcdf_file(str(path), "w", version=2)
    f.title = (
        "CSR GRACE and GRACE-FO MASCON RL06Mv2" if layout == "CSR" else "JPL GRACE and GRACE-FO MASCON RL06.3Mv04 CRI"
    )
    f.time_mean_removed = "2004.000 to 2009.999"
    f.createDimension("time", len(bounds))
    f.createDimension("bounds", 2)
    _coords(f, lat, lon)
    t = f.createVariable("time", "d", ("time",))
    t[:] = [(_days(a, GRACE_EPOCH) + _days(b, GRACE_EPOCH)) / 2 for a, b in bounds]
    t.units = "days since 2002-01-01T00:00:00Z"
    t.calendar = "gregorian"
    t.bounds = "time_bounds"
    tb = f.createVariable("time_bounds", "d", ("time", "bounds"))
    tb[:] = [[_days(a, GRACE_EPOCH), _days(b, GRACE_EPOCH)] for a, b in bounds]
    tb.units = "days since 2002-01-01T00:00:00Z"
    data = np.asarray(data_cm, dtype=np.float64)
    if layout == "CSR":
        v = f.createVariable("lwe_thickness", "f", ("time", "lat", "lon"))
        v[:] = data.astype(np.float32)
    else:
        v = f.createVariable("lwe_thickness", "d", ("time", "lat", "lon"))
        v._FillValue = -99999.0
        v[:] = np.where(np.isfinite(data), data, -99999.0)
        v.grid_mapping = "WGS84"
    v.units = "cm"
    v.long_name = "Liquid_Water_Equivalent_Thickness"
    if scale_factor is not None:
        s = f.createVariable("scale_factor", "d", ("lat", "lon"))
        s._FillValue = -99999.0
        s[:] = np.where(np.isfinite(scale_factor), scale_factor, -99999.0)
        s.units = "1"
    if land_mask is not None:
        m = f.createVariable("land_mask", "d", ("lat", "lon"))
        m[:] = land_mask
    f.close()
    return str(path)


def grace_month_bounds(year, month):
    """Typical record bounds: the calendar month (start, end)."""
    a = dt.datetime(year, month, 1)
    b = dt.datetime(year + (month == 12), month % 12 + 1, 1)
    return a, b


def write_gldas_month(path, year, month, lat, lon, fields, time_units="days since 2000-01-01 00:00:00"):
    """One GLDAS Noah 2.1 monthly file (``GLDAS_NOAH025_M.AYYYYMM.021.nc4`` layout):
    ``fields`` = {name: 2-D array (nlat, nlon) in file order, kg m-2}; NaN -> -9999."""
    f = netcdf_file(str(path), "w", version=2)
    f.createDimension("time", 1)
    f.createDimension("bnds", 2)
    _coords(f, lat, lon)
    t = f.createVariable("time", "d", ("time",))
    t[:] = [_days(dt.datetime(year, month, 1), dt.datetime(2000, 1, 1))]
    t.units = time_units
    t.bounds = "time_bnds"
    tb = f.createVariable("time_bnds", "d", ("time", "bnds"))
    a, b = grace_month_bounds(year, month)
    tb[:] = [[_days(a, dt.datetime(2000, 1, 1)), _days(b, dt.datetime(2000, 1, 1))]]
    tb.units = time_units
    for name, arr in fields.items():
        v = f.createVariable(name, "f", ("time", "lat", "lon"))
        v._FillValue = np.float32(-9999.0)
        v.missing_value = np.float32(-9999.0)
        v.scale_factor = np.float32(1.0)
        v.add_offset = np.float32(0.0)
        v.units = "kg m-2"
        v[:] = np.where(np.isfinite(arr), arr, -9999.0).astype(np.float32)[None]
    f.close()
    return str(path)


FLDAS_LAYERS = (
    ("SoilMoi00_10cm_tavg", 0.1),
    ("SoilMoi10_40cm_tavg", 0.3),
    ("SoilMoi40_100cm_tavg", 0.6),
    ("SoilMoi100_200cm_tavg", 1.0),
)


def write_fldas_month(path, year, month, lat, lon, fields, units=None):
    """One FLDAS Noah monthly file (dims ``X``/``Y``; soil moisture m3 m-3, SWE kg m-2); NaN -> -9999."""
    f = netcdf_file(str(path), "w", version=2)
    f.createDimension("time", 1)
    _coords(f, lat, lon, latname="Y", lonname="X")
    t = f.createVariable("time", "d", ("time",))
    t[:] = [0.0]
    t.units = "days since %04d-%02d-01 00:00:00" % (year, month)
    for name, arr in fields.items():
        v = f.createVariable(name, "f", ("time", "Y", "X"))
        v._FillValue = np.float32(-9999.0)
        v.units = (units or {}).get(name, "m^3 m-3" if name.startswith("SoilMoi") else "kg m-2")
        v[:] = np.where(np.isfinite(arr), arr, -9999.0).astype(np.float32)[None]
    f.close()
    return str(path)
