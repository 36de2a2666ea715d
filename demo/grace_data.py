"""Writers of tiny NetCDF files with the real layouts of GRACE/GLDAS/FLDAS products (demo + tests).

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
    f.title = "CSR GRACE and GRACE-FO MASCON RL06Mv2" if layout == "CSR" else "JPL GRACE and GRACE-FO MASCON RL06.3Mv04 CRI"
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


FLDAS_LAYERS = (("SoilMoi00_10cm_tavg", 0.1), ("SoilMoi10_40cm_tavg", 0.3),
                ("SoilMoi40_100cm_tavg", 0.6), ("SoilMoi100_200cm_tavg", 1.0))


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


# --------------------------------------------------------------------------- demo data set
DEMO_REGION = (108.0, 36.0, 112.0, 40.0)  # lon_min, lat_min, lon_max, lat_max (Loess Plateau-like)


def planted_gws(t_years, lat, lon):
    """Planted groundwater storage (mm): a depletion bowl, -25 mm/yr at 110E 38N, no seasonal cycle."""
    bowl = np.exp(-((lon - 110.0) ** 2 + (lat - 38.0) ** 2) / 1.5 ** 2)
    return -(5.0 + 20.0 * bowl) * t_years


def planted_soil(t_years, lat, lon):
    """Volumetric soil moisture (m3 m-3) per layer (same for all four layers), seasonal."""
    return 0.22 + 0.04 * np.sin(2 * np.pi * (t_years - 0.25)) * (1 + 0.1 * (lon - 110.0)) + 0.005 * (lat - 38.0)


def planted_swe(t_years, lat, lon):
    return np.maximum(0.0, 25.0 * np.cos(2 * np.pi * t_years)) * np.clip((lat - 35.0) / 5.0, 0, 1)


def planted_canopy(t_years, lat, lon):
    return 0.4 + 0.3 * np.sin(2 * np.pi * (t_years - 0.4)) + 0 * lon


def planted_tws(t_years, lat, lon):
    soil_mm = planted_soil(t_years, lat, lon) * 2.0 * 1000.0  # 0.1+0.3+0.6+1.0 m of soil
    return (planted_gws(t_years, lat, lon) + soil_mm + planted_swe(t_years, lat, lon)
            + planted_canopy(t_years, lat, lon))


def demo_months(small):
    years = (2004, 2005, 2006) if small else tuple(range(2004, 2010))
    return [(y, m) for y in years for m in range(1, 13)]


def t_of(y, m):
    return (y - 2004) + (m - 0.5) / 12.0


def make_demo_inputs(folder, small=False, missing=(2005, 6), special=(2005, 11)):
    """CSR-layout global-ring mascon file + FLDAS-layout (0.1 deg) and GLDAS-layout (0.25 deg) monthly files.

    GRACE TWSA = planted total storage at 0.25 deg centres minus its 2004-2009 mean (cm); the record of
    ``special`` is centred in the previous month (as CSR Nov 2011); ``missing`` has no record.
    Returns a dict of source specs and the month list.
    """
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    months = demo_months(small)
    clat = 33.125 + 0.25 * np.arange(40)
    clon = 0.125 + 0.25 * np.arange(1440)
    la, lo = np.meshgrid(clat, clon, indexing="ij")
    tws = np.stack([planted_tws(t_of(y, m), la, lo) for y, m in months])
    base = np.array([2004 <= y <= 2009 for y, _ in months])
    twsa_cm = (tws - tws[base].mean(axis=0)) / 10.0
    keep, bounds = [], []
    for i, (y, m) in enumerate(months):
        if (y, m) == missing:
            continue
        keep.append(i)
        if (y, m) == special:
            py, pm = (y, m - 1) if m > 1 else (y - 1, 12)
            bounds.append((dt.datetime(py, pm, 18), dt.datetime(y, m, 9)))  # centred in the previous month
        elif special is not None and (y, m) == ((special[0], special[1] - 1) if special[1] > 1 else (special[0] - 1, 12)):
            bounds.append((dt.datetime(y, m, 1), dt.datetime(y, m, 18)))
        else:
            bounds.append(grace_month_bounds(y, m))
    csr = write_mascon(folder / "CSR_GRACE_GRACE-FO_RL06_Mascons_all-corrections_v02.nc", clat, clon, bounds,
                       twsa_cm[keep].astype(np.float32))
    flat = 36.05 + 0.1 * np.arange(40)
    flon = 108.05 + 0.1 * np.arange(40)
    fla, flo = np.meshgrid(flat, flon, indexing="ij")
    glat = 35.125 + 0.25 * np.arange(22)
    glon = 107.125 + 0.25 * np.arange(24)
    gla, glo = np.meshgrid(glat, glon, indexing="ij")
    for y, m in months:
        t = t_of(y, m)
        th = planted_soil(t, fla, flo)
        fields = {name: th for name, _ in FLDAS_LAYERS}
        fields["SWE_inst"] = planted_swe(t, fla, flo)
        write_fldas_month(folder / ("FLDAS_NOAH01_C_GL_M.A%04d%02d.001.nc" % (y, m)), y, m, flat, flon, fields)
        write_gldas_month(folder / ("GLDAS_NOAH025_M.A%04d%02d.021.nc4" % (y, m)), y, m, glat, glon,
                          {"CanopInt_inst": planted_canopy(t, gla, glo)})
    fl = folder / "FLDAS_NOAH01_C_GL_M.A*.nc"
    gl = folder / "GLDAS_NOAH025_M.A*.nc4"
    return {
        "grace": str(csr),
        "fldas_soil": ['NETCDF:"%s":%s' % (fl, name) for name, _ in FLDAS_LAYERS],
        "fldas_swe": 'NETCDF:"%s":SWE_inst' % fl,
        "gldas_canopy": 'NETCDF:"%s":CanopInt_inst' % gl,
        "months": months, "missing": missing, "special": special,
        "fine_lat": flat[::-1], "fine_lon": flon,
    }
