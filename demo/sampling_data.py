"""Deterministic inputs for the sampling (step 50) and validation (step 60) demo steps.

Three landscapes side by side, as in Liu et al. (2024): a coal-mining subsidence bowl (severe at
its centre down to micro at its rim), an irrigation district (-25..15 mm/yr with a seasonal term)
and a desert (-5..5 mm/yr). The velocity and the monthly deformation live on a UTM 49N grid
(100 m pixels); GWSA on a geographic 0.01 deg grid, so sampling crosses CRSs.
"""

import datetime as dt

import numpy as np
from osgeo import ogr, osr

from subsidence_toolkit.core.io.dates import decimal_year
from subsidence_toolkit.core.io.rasters import grid_from_origin, open_raster, write_raster

UTM = 32649
X0, Y0, PIX = 400000.0, 4400000.0, 100.0
AREAS = ("mining bowl", "irrigation district", "desert")
SY = {"mining bowl": 0.024, "irrigation district": 0.03, "desert": 0.015}  # Liu et al. 2024 sec. 2.3.4
START = dt.date(2020, 1, 15)


def months(n=24, start=START):
    out = []
    for i in range(n):
        y, m = divmod(start.month - 1 + i, 12)
        out.append(dt.date(start.year + y, m + 1, 15))
    return out


def years_since(dates, origin=START):
    return np.array([decimal_year(d) - decimal_year(origin) for d in dates])


def grid_shape(small):
    return (45, 90) if small else (120, 240)


def velocity_model(ny, nx):
    """Velocity (mm/yr) of the three strips (columns: thirds) and the strip index of each pixel."""
    yy, xx = np.mgrid[0:ny, 0:nx].astype(float)
    third = nx / 3.0
    strip = np.minimum((xx // third).astype(int), 2)
    # mining bowl: -190 mm/yr at the centre of the west strip, -4 at its rim
    cx, cy, s = third / 2, ny / 2, third / 5
    bowl = -4.0 - 186.0 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))
    irrig = -5.0 - 20.0 * np.sin(np.pi * (xx - third) / third) * np.cos(np.pi * yy / ny) ** 2 + 15 * (yy / ny - 0.5)
    desert = 5.0 * np.sin(2 * np.pi * xx / third) * np.cos(2 * np.pi * yy / ny)
    v = np.where(strip == 0, bowl, np.where(strip == 1, irrig, desert))
    return v, strip


def deformation_model(v, strip, dates):
    """Monthly cumulative deformation (mm): rate x time + 6 mm seasonal term in the irrigation district."""
    t = years_since(dates)
    seas = np.where(strip == 1, 6.0, 0.0)
    return v[None] * t[:, None, None] + seas[None] * np.sin(2 * np.pi * t)[:, None, None]


def gwsa_model(lon, lat, dates, lon_min, lon_max):
    """GWSA (mm): a decline of 60 mm/yr under the mine (west third of [lon_min, lon_max]), 25 under the
    irrigation district (middle third), 3 in the desert (east), plus a 20 mm annual cycle."""
    t = years_since(dates)
    frac = (lon - lon_min) / max(lon_max - lon_min, 1e-9)
    rate = np.where(frac < 1 / 3, -60.0, np.where(frac < 2 / 3, -25.0, -3.0))
    return rate[None] * t[:, None, None] + 20.0 * np.sin(2 * np.pi * (t[:, None, None] - 0.25)) + 0 * lat[None]


def wgs84_srs():
    s = osr.SpatialReference()
    s.ImportFromEPSG(4326)
    s.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return s


def make_rasters(folder, small, seed=50):
    """velocity.tif, deformation_monthly.tif (UTM) and gwsa_monthly.tif (EPSG:4326); returns paths + models."""
    ny, nx = grid_shape(small)
    rng = np.random.default_rng(seed)
    v, strip = velocity_model(ny, nx)
    dates = months(24)
    defo = deformation_model(v, strip, dates)
    # decorrelated pixels (NoData) in the velocity and the series alike
    hole = rng.random((ny, nx)) < 0.03
    v_out = np.where(hole, np.nan, v)
    defo_out = np.where(hole[None], np.nan, defo)
    grid = grid_from_origin(X0, Y0, PIX, PIX, nx, ny, epsg=UTM)
    vel_path = str(folder / "velocity.tif")
    defo_path = str(folder / "deformation_monthly.tif")
    write_raster(vel_path, grid, v_out, band_names=["velocity"], units="mm/yr")
    write_raster(defo_path, grid, defo_out, dates=dates)
    gwsa_path = make_gwsa(folder / "gwsa_monthly.tif", vel_path, dates)
    return dict(
        velocity=vel_path,
        deformation=defo_path,
        gwsa=gwsa_path,
        dates=dates,
        v=v,
        strip=strip,
        defo=defo_out,
        grid=grid,
    )


def make_gwsa(path, velocity_path, dates):
    """GWSA on a 0.01 deg grid covering the velocity raster's extent with a ~10 km margin."""
    x0, y0, x1, y1, wkt = raster_extent(velocity_path)
    src = osr.SpatialReference()
    src.ImportFromWkt(wkt)
    src.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    ct = osr.CoordinateTransformation(src, wgs84_srs())
    corners = [ct.TransformPoint(float(x), float(y))[:2] for x in (x0, x1) for y in (y0, y1)]
    lons, lats = [c[0] for c in corners], [c[1] for c in corners]
    d = 0.01
    lon0, lat1 = np.floor(min(lons) * 100) / 100 - 0.1, np.ceil(max(lats) * 100) / 100 + 0.1
    gx = int(round((max(lons) + 0.1 - lon0) / d)) + 1
    gy = int(round((lat1 - (min(lats) - 0.1)) / d)) + 1
    glon = lon0 + (np.arange(gx) + 0.5) * d
    glat = lat1 - (np.arange(gy) + 0.5) * d
    lon2, lat2 = np.meshgrid(glon, glat)
    gwsa = gwsa_model(lon2, lat2, dates, min(lons), max(lons))
    write_raster(str(path), grid_from_origin(lon0, lat1, d, d, gx, gy, epsg=4326), gwsa, dates=dates)
    return str(path)


def raster_extent(path):
    ds = open_raster(path)
    gt = ds.GetGeoTransform()
    x0, x1 = gt[0], gt[0] + gt[1] * ds.RasterXSize
    y0, y1 = gt[3] + gt[5] * ds.RasterYSize, gt[3]
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1), ds.GetProjection()


def make_areas(path, velocity_path):
    """GeoPackage with the three landscapes: the thirds (by x) of the velocity raster's extent, in EPSG:4326."""
    x0, y0, x1, y1, wkt = raster_extent(velocity_path)
    src = osr.SpatialReference()
    src.ImportFromWkt(wkt)
    src.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    ct = osr.CoordinateTransformation(src, wgs84_srs())
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    lyr = ds.CreateLayer("landscapes", wgs84_srs(), ogr.wkbPolygon)
    lyr.CreateField(ogr.FieldDefn("landscape", ogr.OFTString))
    w = (x1 - x0) / 3.0
    for i, name in enumerate(AREAS):
        a, b = x0 + i * w, x0 + (i + 1) * w
        ring = ogr.Geometry(ogr.wkbLinearRing)
        pts = (
            [(x, y0) for x in np.linspace(a, b, 10)]
            + [(b, y) for y in np.linspace(y0, y1, 10)]
            + [(x, y1) for x in np.linspace(b, a, 10)]
            + [(a, y) for y in np.linspace(y1, y0, 10)]
        )
        for x, y in pts:
            lon, lat = ct.TransformPoint(float(x), float(y))[:2]
            ring.AddPoint_2D(lon, lat)
        ring.CloseRings()
        poly = ogr.Geometry(ogr.wkbPolygon)
        poly.AddGeometry(ring)
        f = ogr.Feature(lyr.GetLayerDefn())
        f.SetField("landscape", name)
        f.SetGeometry(poly)
        lyr.CreateFeature(f)
    ds = None
    return str(path)
