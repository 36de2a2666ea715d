"""A small, deterministic synthetic world for the demo, with the ground truth saved beside it.

Three landscapes in a 0.8 deg x 0.8 deg region of the Loess Plateau (108.0-108.8 E, 38.6-39.4 N):

* **mining** (south-west): a subsidence bowl, inelastic, up to -140 mm/yr at its centre, plus a
  small elastic response to mine-drainage groundwater with no lag;
* **irrigation** (east half): slow compaction (-18 mm/yr) plus an elastic response to groundwater
  pumping that **lags the groundwater by one month** (Liu et al. 2024: Hetao, 1-2 months);
* **desert** (north-west): stable.

Groundwater (mm of water) in each landscape = a decline + irregular, non-seasonal pumping pulses.
The pulses are what the GRACE downscaling can see: the method replaces GRACE's mean seasonal
cycle by the model's, so a purely seasonal groundwater signal would vanish from the GWSA
(see the reference note on the method property).

Files written (layouts as the real products, sizes reduced):

* ``insar/<frame>/`` -- a LiCSAR frame download exactly as LiCSAR ships it:
  ``GEOC/YYYYMMDD_YYYYMMDD/YYYYMMDD_YYYYMMDD.geo.unw.tif`` (float32 unwrapped phase, rad, 0 = no data
  without a NoData tag) and ``.geo.cc.tif`` (8-bit coherence 0-255), ``metadata/<frame>.geo.E/N/U/hgt.tif``
  (0 = no data) and ``metadata/baselines``, on an irregular Sentinel-1 epoch list (12-day revisit, ~10 % of
  acquisitions missing), pairs with temporal baseline <= 48 days; a reservoir is no data in every
  interferogram;
* ``hyp3/S1AA_<date1>T<time>_<date2>T<time>_VVP<days>_INT80_G_ueF_<id>.zip`` -- a HyP3 GAMMA stack of the
  mining area as HyP3 ships it: one zip per product with ``_unw_phase.tif``, ``_corr.tif`` (float32, NoData 0),
  ``_lv_theta.tif``/``_lv_phi.tif`` (radians), ``_dem.tif``, ``_water_mask.tif`` and the ``.txt`` metadata
  (baseline, unwrapping reference point, where the phase is 0), 80 m pixels in UTM zone 49N, each product
  on its own extent;
* ``grace/CSR_GRACE_GRACE-FO_RL06_Mascons_all-corrections_v02.nc`` -- CSR mascon layout:
  ``lwe_thickness`` (cm), lat ascending, lon 0-360 (x.125 centres), ``time`` days since
  2002-01-01 with ``time_bounds``; one month missing and one record centred in the previous
  month (as CSR's Nov 2011 / May 2015);
* ``fldas/FLDAS_NOAH01_C_GL_M.AYYYYMM.001.nc`` -- X/Y dims, volumetric soil moisture in four
  layers (m3 m-3) and ``SWE_inst`` (kg m-2) on the fine model grid;
* ``gldas/GLDAS_NOAH025_M.AYYYYMM.021.nc4`` -- ``CanopInt_inst`` and ``SWE_inst`` (kg m-2),
  fill -9999, 0.25 deg, lon -180..180;
* ``areas.geojson`` (landscape polygons), ``factors/*.tif`` (Geodetector drivers),
  ``leveling.csv`` and ``wells.csv`` (id, lon, lat, date, value);
* ``regional/`` -- two overlapping frames of one ascending track (monthly LOS series, the second
  on its own reference: a planted offset per date), a descending track over the whole region, and
  both tracks' LiCSAR-style unit-vector rasters ``asc.geo.E/N/U.tif``, ``dsc.geo.E/N/U.tif``; here
  the world's displacement is vertical and the mining bowl also moves the ground horizontally
  towards its centre (east component planted);
* ``insar_raw/`` -- the same interferograms as real products deliver them (not in the tiny test world):
  plus a tropospheric delay that GACOS models (``gacos/YYYYMMDD.ztd`` + ``.ztd.rsc``, the GACOS format, on
  their own coarser grid), per-epoch orbital ramps, and +2 pi unwrapping errors over a patch in 3
  interferograms (the loop closure rejects them, or corrects them per pixel) and over a small patch in a
  fourth (the rejection does not see it; n_loop_errors and the per-pixel correction do);
  ``deforming_areas.geojson`` (the mining and irrigation landscapes with a 0.1 deg margin, as a user would
  draw the districts they suspect: left out of the ramp fit); the planted ramps and patches are in
  ``truth.json``;
* ``truth/`` -- velocity (mm/yr), groundwater series per landscape, planted lags,
  strongest factor (``truth.json``); vertical / east monthly series and velocities of ``regional/``.
"""

import datetime as dt
import json
import math
import shutil
from pathlib import Path

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.io import netcdf_file
from scipy.ndimage import gaussian_filter

from subsidence_toolkit.core.insar import gacos, geometry, units
from subsidence_toolkit.core.io import dates, rasters

WAVELENGTH = units.SENTINEL1_WAVELENGTH_M
LON0, LON1, LAT0, LAT1 = 108.0, 108.8, 38.6, 39.4
LANDSCAPES = {
    # name: (lon_min, lon_max, lat_min, lat_max), Sy, planted lag in months (None: no coupling)
    "desert": ((108.0, 108.4, 39.0, 39.4), 0.015, None),
    "mining": ((108.0, 108.4, 38.6, 39.0), 0.022, 0),
    "irrigation": ((108.4, 108.8, 38.6, 39.4), 0.03, 1),
}
BOWL = (108.2, 38.8, 0.06, -140.0)  # centre lon, lat, sigma (deg), peak rate mm/yr
RESERVOIR = (108.12, 39.28, 0.03)  # a lake: NaN in every interferogram
FRAME = "157D_05226_131313"  # LiCSAR frame id: track 157, descending


def fresh_dir(path):
    """Remove a folder this world wrote in an earlier run (products of another world version would be
    read along with the new ones by a folder input)."""
    if Path(path).is_dir():
        shutil.rmtree(path)


#: planted orbital / long-wavelength ramps of ``insar_raw/``: per epoch, coefficients drawn N(0, RAMP_RAD) rad per
#: 0.4 deg in longitude and latitude (see :func:`planted_ramp`)
RAMP_RAD = 3.0
#: +2 pi unwrapping errors of ``insar_raw/`` (lon_min, lon_max, lat_min, lat_max): a large patch in three
#: interferograms, a small one in a fourth
BIG_PATCH = (108.5, 108.74, 39.0, 39.2)
SMALL_PATCH = (108.3, 108.34, 39.1, 39.14)
#: margin (deg) around the mining and irrigation landscapes in ``deforming_areas.geojson``: a user who knows the
#: districts draws them with a margin, because the deformation does not stop at their boundary (here the
#: landscapes' edges are ~0.02 deg wide sigmoids; with no margin, a plane fitted outside the boxes takes
#: up their edges' subsidence gradient and extrapolates it over the image: 5.5 mm/yr velocity RMSE)
DEFORMING_MARGIN = 0.1


def planted_ramp(coef, lon, lat):
    """The planted ramp (rad) of one epoch with coefficients ``coef`` = (c_lon, c_lat), rad per 0.4 deg."""
    return coef[0] * (lon - 108.4) / 0.4 + coef[1] * (lat - 39.0) / 0.4


def in_box(lon, lat, box):
    x0, x1, y0, y1 = box
    return (lon > x0) & (lon < x1) & (lat > y0) & (lat < y1)


def deforming_boxes(margin=DEFORMING_MARGIN):
    """The areas a user would exclude from a ramp fit: the mining and irrigation landscapes plus ``margin``."""
    return {
        n: (x0 - margin, x1 + margin, y0 - margin, y1 + margin)
        for n, ((x0, x1, y0, y1), _, _) in LANDSCAPES.items()
        if n != "desert"
    }


HYP3_AREA = (108.2, 38.8)  # centre of the HyP3 stack (lon, lat): the mining bowl
HYP3_EPSG = 32649  # UTM zone 49N


def month_range(first, last):
    out, d = [], first
    while d <= last:
        out.append(d)
        d = dt.date(d.year + (d.month == 12), d.month % 12 + 1, 1)
    return out


def _nc_dimensions(f, sizes):
    """The dimensions ``(name, size)`` of the open NetCDF file ``f``, in this order."""
    for name, size in sizes:
        f.createDimension(name, size)


def _nc_variable(f, name, dtype, dims, values, **attributes):
    """A variable of the open NetCDF file ``f`` with its values and attributes."""
    v = f.createVariable(name, dtype, dims)
    v[:] = values
    for key, value in attributes.items():
        setattr(v, key, value)
    return v


class World:
    def __init__(self, root, small=False, seed=2024, tiny=False):
        self.root = Path(root)
        self.small = small or tiny
        self.tiny = tiny
        self.rng = np.random.default_rng(seed)
        self.pixel = 0.025 if tiny else 0.01 if small else 0.005  # InSAR grid (deg)
        self.model_pixel = 0.04 if tiny else 0.02  # fine hydrological model grid (deg)
        self.first = dt.date(2020, 1, 1) if tiny else dt.date(2019, 1, 1) if small else dt.date(2018, 1, 1)
        self.last = dt.date(2021, 12, 31)
        self.months = month_range(self.first, dt.date(2021, 12, 1))
        self.t0 = dt.date(2018, 1, 1)  # time origin of the truth
        self._pulses = {}

    # ------------------------------------------------------------------ truth in time
    def days(self, d):
        return (d - self.t0).days

    def groundwater(self, name, days):
        """Groundwater storage (mm water) of a landscape at ``days`` since t0: decline + pulses."""
        trend = {"desert": -10.0, "mining": -60.0, "irrigation": -25.0}[name]
        amp = {"desert": 4.0, "mining": 25.0, "irrigation": 45.0}[name]
        if name not in self._pulses:
            n = 80
            knots = np.arange(n) * 30.4375 - 45.0
            vals = np.convolve(self.rng.normal(0, 1, n + 2), np.ones(3) / 3, mode="valid")
            self._pulses[name] = CubicSpline(knots, amp * vals / vals.std())
        days = np.asarray(days, float)
        return trend * days / 365.25 + self._pulses[name](days)

    def monthly_mean(self, name, month):
        """Monthly mean of a landscape's groundwater (what GRACE and wells see)."""
        nd = dates.days_in_month(month.year, month.month)
        days = self.days(month) + np.arange(nd) + 0.5
        return float(np.mean(self.groundwater(name, days)))

    # ------------------------------------------------------------------ truth in space
    def grid(self, pixel, margin=0.0):
        nx = int(round((LON1 - LON0 + 2 * margin) / pixel))
        ny = int(round((LAT1 - LAT0 + 2 * margin) / pixel))
        return rasters.grid_from_origin(LON0 - margin, LAT1 + margin, pixel, pixel, nx, ny)

    @staticmethod
    def centres(grid):
        gt = grid.geotransform
        lon = gt[0] + (np.arange(grid.xsize) + 0.5) * gt[1]
        lat = gt[3] + (np.arange(grid.ysize) + 0.5) * gt[5]
        return np.meshgrid(lon, lat)

    @staticmethod
    def weights(lon, lat):
        """Smooth membership (0..1) of every landscape (sigmoid edges ~0.02 deg)."""
        out = {}
        for name, ((x0, x1, y0, y1), _, _) in LANDSCAPES.items():
            s = 0.02
            wx = 1 / (1 + np.exp(-(lon - x0) / s)) * 1 / (1 + np.exp((lon - x1) / s))
            wy = 1 / (1 + np.exp(-(lat - y0) / s)) * 1 / (1 + np.exp((lat - y1) / s))
            out[name] = wx * wy
        return out

    def velocity(self, lon, lat):
        """Long-term (inelastic) LOS velocity, mm/yr."""
        w = self.weights(lon, lat)
        cx, cy, sig, peak = BOWL
        bowl = peak * np.exp(-((lon - cx) ** 2 + (lat - cy) ** 2) / (2 * sig**2))
        return bowl * w["mining"] - 18.0 * w["irrigation"] - 1.0 * w["desert"]

    def displacement(self, lon, lat, day):
        """LOS displacement (mm, positive toward the satellite) at ``day`` since t0."""
        w = self.weights(lon, lat)
        d = self.velocity(lon, lat) * day / 365.25
        d = d + 0.25 * w["irrigation"] * (
            self.groundwater("irrigation", day - 30.4) - self.groundwater("irrigation", 0)
        )
        d = d + 0.30 * w["mining"] * (self.groundwater("mining", day) - self.groundwater("mining", 0))
        return d + 2.0 * math.sin(2 * math.pi * day / 365.25)  # thermal seasonal term

    # ------------------------------------------------------------------ writers
    def epochs(self):
        out, d = [], dt.date(self.first.year, 1, 3)
        while d <= self.last:
            if not out or self.rng.random() > 0.1:
                out.append(d)
            d += dt.timedelta(days=12)
        return out

    def write_insar(self):
        frame = self.root / "insar" / FRAME
        folder = frame / "GEOC"
        fresh_dir(frame)  # a folder input reads every product in it: no products of an earlier world
        folder.mkdir(parents=True, exist_ok=True)
        grid = self.grid(self.pixel)
        lon, lat = self.centres(grid)
        epochs = self.epochs()
        w = self.weights(lon, lat)
        base_coh = (
            0.85 * w["desert"]
            + 0.55 * w["irrigation"]
            + 0.45 * w["mining"]
            + 0.3 * (1 - w["desert"] - w["irrigation"] - w["mining"]).clip(0, 1)
        )
        lake = (lon - RESERVOIR[0]) ** 2 + (lat - RESERVOIR[1]) ** 2 < RESERVOIR[2] ** 2
        disp = {e: self.displacement(lon, lat, self.days(e)) for e in epochs}
        aps = {e: gaussian_filter(self.rng.normal(0, 1, lon.shape), 6) for e in epochs}
        for e in epochs:
            aps[e] *= 1.5 / max(aps[e].std(), 1e-9)  # ~1.5 mm atmospheric delay per epoch
        pairs = [(a, b) for i, a in enumerate(epochs) for b in epochs[i + 1 :] if (b - a).days <= 48]
        to_rad = -4 * math.pi / (WAVELENGTH * 1000.0)  # mm -> rad, d = -lambda/(4 pi) phi
        files = []
        for a, b in pairs:
            dtd = (b - a).days
            coh = np.clip(base_coh * math.exp(-dtd / 200.0) + self.rng.normal(0, 0.03, lon.shape), 0.05, 0.99)
            sigma = np.sqrt((1 - coh**2) / (2 * 20 * coh**2))  # CRLB, 20 looks
            phase = to_rad * ((disp[b] + aps[b]) - (disp[a] + aps[a])) + self.rng.normal(0, 1, lon.shape) * sigma
            phase[lake] = 0.0  # LiCSAR: no data is 0, without a NoData tag
            stem = "%s_%s" % (a.strftime("%Y%m%d"), b.strftime("%Y%m%d"))
            unw = folder / stem / (stem + ".geo.unw.tif")
            write_licsar_tif(unw, grid, phase.astype(np.float32))
            write_licsar_tif(folder / stem / (stem + ".geo.cc.tif"), grid, np.round(coh * 255).astype(np.uint8))
            files.append(str(unw))
        self.write_licsar_metadata(frame / "metadata", grid, epochs)
        truth_ts = np.stack([disp[e] - disp[epochs[0]] for e in epochs])
        truth_ts[:, lake] = np.nan
        return grid, epochs, pairs, files, truth_ts, lake

    def write_regional(self, truth_dir):
        """Ascending frames A and B (overlapping, B with a per-date offset) and a descending track, monthly
        LOS (mm) with 1 mm noise, plus E/N/U rasters; the truth (vertical, east) goes to ``truth_dir``."""
        folder = self.root / "regional"
        folder.mkdir(parents=True, exist_ok=True)
        grid = self.grid(self.pixel)
        lon, lat = self.centres(grid)
        months = [dt.date(m.year, m.month, 15) for m in self.months]
        vert = np.stack([self.displacement(lon, lat, self.days(d)) for d in months])
        vert -= vert[0]
        cx, cy, sig, peak = BOWL
        bowl = np.exp(-((lon - cx) ** 2 + (lat - cy) ** 2) / (2 * sig**2))
        east_rate = 0.35 * peak * (lon - cx) / sig * bowl  # towards the bowl's centre, mm/yr
        years = np.array([(d - months[0]).days / 365.25 for d in months])
        east = east_rate[None] * years[:, None, None]
        across = (lon - LON0) / (LON1 - LON0)
        geo = {
            "asc": geometry.unit_vector(-10.5, 31.0 + 14.0 * across),  # looks east: near range in the west
            "dsc": geometry.unit_vector(190.5, 45.0 - 14.0 * across),
        }
        paths = {}
        for track, (e, n, u) in geo.items():
            for comp, arr in zip("ENU", (e, n, u)):
                p = folder / ("%s.geo.%s.tif" % (track, comp))
                rasters.write_raster(p, grid, arr, band_names=[comp], units="")
                paths["%s_%s" % (track, comp)] = str(p)
        los = {t: geometry.los_from_enu(east, 0.0, vert, e[None], n[None], u[None]) for t, (e, n, u) in geo.items()}
        nx = grid.xsize
        split_a, split_b = int(0.6 * nx), int(0.45 * nx)
        rng = np.random.default_rng(15)  # its own generator: the other inputs stay as they were
        offsets_b = np.cumsum(rng.normal(0, 4.0, len(months)))  # frame B's reference drifts
        gt = grid.geotransform
        for name, c0, c1, off in (("frame_a", 0, split_a, np.zeros(len(months))), ("frame_b", split_b, nx, offsets_b)):
            fgrid = rasters.RasterGrid(c1 - c0, grid.ysize, (gt[0] + c0 * gt[1],) + gt[1:], grid.projection)
            data = los["asc"][:, :, c0:c1] + off[:, None, None] + rng.normal(0, 1.0, (len(months), grid.ysize, c1 - c0))
            p = folder / ("%s_asc_monthly.tif" % name)
            rasters.write_raster(p, fgrid, data, dates=months, metadata={"COMPONENT": "LOS"})
            paths[name] = str(p)
        p = folder / "dsc_monthly.tif"
        rasters.write_raster(p, grid, los["dsc"] + rng.normal(0, 1.0, los["dsc"].shape), dates=months)
        paths["dsc"] = str(p)
        X = np.stack([np.ones_like(years), years], 1)
        for name, series in (("vertical", vert), ("east", east), ("asc_los", los["asc"])):
            rasters.write_raster(truth_dir / ("%s_monthly.tif" % name), grid, series, dates=months)
            v = np.linalg.lstsq(X, series.reshape(len(years), -1), rcond=None)[0][1].reshape(grid.ysize, nx)
            rasters.write_raster(
                truth_dir / ("%s_velocity.tif" % name), grid, v, band_names=["velocity"], units="mm/yr"
            )
            paths["truth_%s_monthly" % name] = str(truth_dir / ("%s_monthly.tif" % name))
            paths["truth_%s_velocity" % name] = str(truth_dir / ("%s_velocity.tif" % name))
        paths["frame_b_offsets_mm"] = [float(o) for o in offsets_b]
        paths["frame_b_first_column"] = split_b
        return paths

    def epoch_baselines(self, epochs):
        """Perpendicular baseline (m) of every epoch relative to the first (Sentinel-1's ~100 m orbital tube)."""
        rng = np.random.default_rng(7)
        return {e: (0.0 if i == 0 else float(np.round(rng.normal(0, 60), 2))) for i, e in enumerate(epochs)}

    def write_licsar_metadata(self, folder, grid, epochs):
        """LiCSAR frame metadata: ``<frame>.geo.E/N/U.tif`` (unit vector ground -> satellite, descending, incidence
        30.5-45.5 deg across the swath), ``<frame>.geo.hgt.tif`` and ``baselines`` (primary, secondary, bperp,
        btemp per epoch)."""
        folder.mkdir(parents=True, exist_ok=True)
        lon, lat = self.centres(grid)
        inc = np.radians(30.5 + 15.0 * (lon - LON0) / (LON1 - LON0))
        heading = np.radians(-167.0)  # descending, right-looking: look direction heading + 90 deg
        look_az = heading + np.pi / 2
        enu = {"E": -np.sin(inc) * np.sin(look_az), "N": -np.sin(inc) * np.cos(look_az), "U": np.cos(inc)}
        lake = (lon - RESERVOIR[0]) ** 2 + (lat - RESERVOIR[1]) ** 2 < RESERVOIR[2] ** 2
        for k, v in enu.items():
            v = v.astype(np.float32)
            v[lake] = 0.0  # LiCSAR: no data is 0
            write_licsar_tif(folder / ("%s.geo.%s.tif" % (FRAME, k)), grid, v)
        hgt = (1100 + 300 * (lat - LAT0) + 40 * np.sin(lon * 20.0)).astype(np.float32)
        write_licsar_tif(folder / ("%s.geo.hgt.tif" % FRAME), grid, hgt)
        bp = self.epoch_baselines(epochs)
        lines = [
            "%s %s %.2f %.1f" % (epochs[0].strftime("%Y%m%d"), e.strftime("%Y%m%d"), bp[e], (e - epochs[0]).days)
            for e in epochs[1:]
        ]
        (folder / "baselines").write_text("\n".join(lines) + "\n")

    def hyp3_epochs(self, epochs):
        """The epochs of the HyP3 stack: the last year of the world (the last 5 months in the reduced demo)."""
        first = self.last - dt.timedelta(days=150 if self.small else 365)
        return [e for e in epochs if e >= first]

    def write_hyp3(self, epochs):
        """A HyP3 GAMMA stack of the mining bowl as HyP3 ships it (see the module docstring). Returns the folder,
        the common-area grid, the epochs and the LSQ velocity truth (mm/yr) on it."""
        from osgeo import osr

        rng = np.random.default_rng(49)
        folder = self.root / "hyp3"
        fresh_dir(folder)
        folder.mkdir(parents=True, exist_ok=True)
        eps = self.hyp3_epochs(epochs)
        pairs = [(a, b) for i, a in enumerate(eps) for b in eps[i + 1 : i + 3]]  # two nearest neighbours
        px = 80.0
        nx, ny = (90, 110) if self.small else (200, 240)
        wgs, utm = osr.SpatialReference(), osr.SpatialReference()
        wgs.ImportFromEPSG(4326)
        utm.ImportFromEPSG(HYP3_EPSG)
        for s in (wgs, utm):
            s.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        cx, cy, _ = osr.CoordinateTransformation(wgs, utm).TransformPoint(*HYP3_AREA)
        x0 = round((cx - nx / 2 * px) / px) * px
        y0 = round((cy + ny / 2 * px) / px) * px
        margin = 6
        X0, Y0 = x0 - margin * px, y0 + margin * px  # the lattice origin of the largest footprint
        NX, NY = nx + 2 * margin, ny + 2 * margin
        xs = X0 + (np.arange(NX) + 0.5) * px
        ys = Y0 - (np.arange(NY) + 0.5) * px
        XX, YY = np.meshgrid(xs, ys)
        pts = osr.CoordinateTransformation(utm, wgs).TransformPoints(np.stack([XX.ravel(), YY.ravel()], 1).tolist())
        lon = np.array([p[0] for p in pts]).reshape(NY, NX)
        lat = np.array([p[1] for p in pts]).reshape(NY, NX)
        disp = {e: self.displacement(lon, lat, self.days(e)) for e in eps}
        aps = {e: gaussian_filter(rng.normal(0, 1, lon.shape), 8) for e in eps}
        for e in eps:
            aps[e] *= 1.0 / max(aps[e].std(), 1e-9)
        w = self.weights(lon, lat)
        base_coh = 0.85 * w["desert"] + 0.55 * w["irrigation"] + 0.5 * w["mining"] + 0.3
        base_coh = np.clip(base_coh, 0, 0.95)
        inc = np.radians(30.5 + 15.0 * (lon - LON0) / (LON1 - LON0))
        theta = (np.pi / 2 - inc).astype(np.float32)  # look-vector elevation above the horizon, radians
        # look-vector orientation from east (counter-clockwise) of the ground -> satellite direction: heading
        # -167 deg, right-looking, so the satellite is seen at azimuth 103 deg (clockwise from north) = -13 deg
        phi = np.full(lon.shape, np.radians(90.0 - (-167.0 + 270.0)), np.float32)
        dem = (1100 + 300 * (lat - LAT0) + 40 * np.sin(lon * 20.0)).astype(np.float32)
        bp = self.epoch_baselines(epochs)
        to_rad = -4 * math.pi / (WAVELENGTH * 1000.0)
        wkt = utm.ExportToWkt()
        zips = []
        for k, (a, b) in enumerate(pairs):
            dtd = (b - a).days
            coh = np.clip(base_coh * math.exp(-dtd / 200.0) + rng.normal(0, 0.03, lon.shape), 0.05, 0.99)
            sigma = np.sqrt((1 - coh**2) / (2 * 20 * coh**2))
            phase = to_rad * ((disp[b] + aps[b]) - (disp[a] + aps[a])) + rng.normal(0, 1, lon.shape) * sigma
            # each product covers the common area plus its own margin
            t, l_, bt, r = (int(v) for v in rng.integers(0, margin + 1, 4))
            if k == 0:
                t = l_ = 0  # the common area is exactly the intersection: its top left from the first
            elif k == 1:
                bt = r = 0  # product, its bottom right from the second
            sl = (slice(margin - t, margin + ny + bt), slice(margin - l_, margin + nx + r))
            gt = (X0 + (margin - l_) * px, px, 0.0, Y0 - (margin - t) * px, 0.0, -px)
            ph = phase[sl]
            # HyP3 unwraps from the first pixel in SAR geometry (top right of a descending scene in map view):
            # the phase there is removed and reported in the .txt
            ref_r, ref_c = 0, ph.shape[1] - 1
            ref_phase = float(ph[ref_r, ref_c])
            ph = (ph - ref_phase).astype(np.float32)
            ph[ph == 0] = np.float32(1e-6)  # 0 is the declared NoData: keep the reference pixel valid
            name = "S1AA_%sT224101_%sT224101_VVP%03d_INT80_G_ueF_%04X" % (
                a.strftime("%Y%m%d"),
                b.strftime("%Y%m%d"),
                dtd,
                (0x1A2B + 97 * k) % 0x10000,
            )
            layers = {
                "unw_phase": (ph, 0.0),
                "corr": (coh[sl].astype(np.float32), 0.0),
                "lv_theta": (theta[sl], 0.0),
                "lv_phi": (phi[sl], 0.0),
                "dem": (dem[sl], 0.0),
                "water_mask": (np.ones(ph.shape, np.uint8), None),
            }
            rx, ry = gt[0] + (ref_c + 0.5) * px, gt[3] - (ref_r + 0.5) * px
            txt = hyp3_txt(a, b, bp[b] - bp[a], ref_phase, rx, ry, lon[sl][ref_r, ref_c], lat[sl][ref_r, ref_c])
            zips.append(write_hyp3_zip(folder, name, gt, wkt, layers, txt))
        common = rasters.RasterGrid(nx, ny, (x0, px, 0.0, y0, 0.0, -px), wkt)
        c = (slice(margin, margin + ny), slice(margin, margin + nx))
        t = np.array([(e - eps[0]).days / 365.25 for e in eps])
        truth_ts = np.stack([disp[e][c] - disp[eps[0]][c] for e in eps])
        X = np.stack([np.ones_like(t), t], 1)
        vel = np.linalg.lstsq(X, truth_ts.reshape(len(t), -1), rcond=None)[0][1].reshape(ny, nx)
        truth = self.root / "truth" / "hyp3_velocity_truth.tif"
        truth.parent.mkdir(parents=True, exist_ok=True)
        rasters.write_raster(truth, common, vel, band_names=["velocity"], units="mm/yr")
        return {
            "hyp3_dir": str(folder),
            "hyp3_products": zips,
            "hyp3_epochs": [e.isoformat() for e in eps],
            "hyp3_pairs": len(pairs),
            "hyp3_velocity_truth": str(truth),
        }

    def write_insar_raw(self, grid, epochs, pairs, files):
        """The interferograms with a GACOS-format troposphere, orbital ramps and unwrapping errors planted
        (own random stream: the rest of the world does not change)."""
        rng = np.random.default_rng(7)
        raw_dir = self.root / "insar_raw"
        gdir = self.root / "gacos"
        fresh_dir(raw_dir)
        fresh_dir(gdir)
        raw_dir.mkdir(parents=True, exist_ok=True)
        gdir.mkdir(parents=True, exist_ok=True)
        step, margin = 0.02, 0.06  # GACOS grid: coarser than the interferograms, wider
        gx = LON0 - margin + step * np.arange(int((LON1 - LON0 + 2 * margin) / step) + 1)
        gy = LAT1 + margin - step * np.arange(int((LAT1 - LAT0 + 2 * margin) / step) + 1)
        ztd_files = []
        for e in epochs:
            a, b = rng.normal(0, 0.02, 2)  # m per degree: ~1.6 cm across the region
            turb = gaussian_filter(rng.normal(0, 1, (gy.size, gx.size)), 2)
            ztd = 2.3 + a * (gy[:, None] - 39.0) + b * (gx[None, :] - 108.4) + 0.006 * turb / max(turb.std(), 1e-9)
            ztd_files.append(
                gacos.write_ztd(
                    gdir / ("%s.ztd" % e.strftime("%Y%m%d")),
                    ztd.astype(np.float32),
                    float(gx[0]),
                    float(gy[0]),
                    step,
                    -step,
                )
            )
        slant = gacos.GacosSet(ztd_files, grid).slant_delays(
            epochs, gacos.Incidence(angle=39.0), 0, grid.ysize, 0, grid.xsize
        )
        lon, lat = self.centres(grid)
        ramp_coef = rng.normal(0, 1.0, (len(epochs), 2)) * RAMP_RAD
        ramps = [planted_ramp(c, lon, lat) for c in ramp_coef]
        index = {e: n for n, e in enumerate(epochs)}
        m = len(pairs)
        bad = [m // 4, m // 2, (3 * m) // 4]  # far apart: no loop holds two of them
        patch_ifg = m // 10
        big = in_box(lon, lat, BIG_PATCH)  # 7.5 % of the image
        small = in_box(lon, lat, SMALL_PATCH)
        out = []
        for k, ((a, b), f) in enumerate(zip(pairs, files)):
            ia, ib = index[a], index[b]
            phase = rasters.open_raster(f).ReadAsArray().astype(np.float64)
            phase[phase == 0] = np.nan  # LiCSAR: 0 is no data
            phase += 4 * math.pi / WAVELENGTH * (slant[ib] - slant[ia]) + ramps[ib] - ramps[ia]
            if k in bad:
                phase[big] += 2 * math.pi
            if k == patch_ifg:
                phase[small] += 2 * math.pi
            path = raw_dir / Path(f).name
            rasters.write_raster(path, grid, phase, band_names=["unwrapped phase"], units="rad")
            out.append(str(path))
        names = [Path(files[k]).name for k in bad]
        deforming = {
            "type": "FeatureCollection",
            "features": [
                {
                    "type": "Feature",
                    "properties": {"area": n},
                    "geometry": {
                        "type": "Polygon",
                        "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]],
                    },
                }
                for n, (x0, x1, y0, y1) in deforming_boxes().items()
            ],
        }
        mask = self.root / "deforming_areas.geojson"
        mask.write_text(json.dumps(deforming))
        return {
            "raw_interferograms": out,
            "gacos": ztd_files,
            "deforming_areas": str(mask),
            "planted_unwrapping_errors": names,
            "planted_small_patch": Path(files[patch_ifg]).name,
            "planted_small_patch_box": list(SMALL_PATCH),
            "planted_ramps_rad": {e.isoformat(): [float(c1), float(c2)] for e, (c1, c2) in zip(epochs, ramp_coef)},
            "small_patch_pixels": int(small.sum()),
        }

    def write_grace(self):
        """CSR layout subset: 0.25 deg cells with x.125 centres, lon 0-360, one missing + one shifted month."""
        folder = self.root / "grace"
        folder.mkdir(parents=True, exist_ok=True)
        lons = np.arange(105.125, 112.0, 0.25)
        lats = np.arange(35.125, 43.0, 0.25)  # ascending, as in the file
        months = self.months
        missing = dt.date(2021, 6, 1)
        shifted = dt.date(2021, 4, 1)  # record centred in the previous month (like CSR May 2015)
        cells = self._cell_truth(lons, lats)
        recs, times, bounds = [], [], []
        for m in months:
            if m == missing:
                continue
            start = self.days(m)
            nd = dates.days_in_month(m.year, m.month)
            b0, b1 = (start - 20, start + 8) if m == shifted else (start, start + nd)
            offset = (self.t0 - dt.date(2002, 1, 1)).days
            times.append(offset + (b0 + b1) / 2.0)
            bounds.append((offset + b0, offset + b1))
            recs.append(cells(m) / 10.0)  # mm -> cm
        path = folder / "CSR_GRACE_GRACE-FO_RL06_Mascons_all-corrections_v02.nc"
        with netcdf_file(str(path), "w") as f:
            f.title = "CSR GRACE and GRACE-FO MASCON RL06Mv2 (demo subset)"
            f.time_mean_removed = "demo period"
            f.createDimension("time", len(times))
            f.createDimension("lat", len(lats))
            f.createDimension("lon", len(lons))
            f.createDimension("bounds", 2)
            v = f.createVariable("lon", "f8", ("lon",))
            v[:] = lons
            v.units, v.standard_name, v.long_name = "degrees_east", "longitude", "longitude"
            v = f.createVariable("lat", "f8", ("lat",))
            v[:] = lats
            v.units, v.standard_name, v.long_name = "degrees_north", "latitude", "latitude"
            v = f.createVariable("time", "f8", ("time",))
            v[:] = np.array(times)
            v.units, v.standard_name = "days since 2002-01-01T00:00:00Z", "time"
            v.calendar, v.bounds = "gregorian", "time_bounds"
            v = f.createVariable("time_bounds", "f8", ("time", "bounds"))
            v[:] = np.array(bounds)
            v = f.createVariable("lwe_thickness", "f4", ("time", "lat", "lon"))
            v[:] = np.stack(recs)[:, ::-1, :].astype(np.float32)  # rows were north-up; file is lat ascending
            v.units, v.long_name = "cm", "Liquid_Water_Equivalent_Thickness"
        return path, missing, shifted

    def _components(self, lon, lat, month):
        """Soil moisture (mm, 0-200 cm), SWE (mm), canopy water (mm) at mid-month."""
        k = month.month - 1
        season = math.cos(2 * math.pi * (k - 7) / 12.0)  # wettest in August
        year_anom = 8.0 * math.sin(month.year * 1.3)
        sm = 380 + 45 * season + year_anom + 15 * np.sin(lon * 7.0) * np.cos(lat * 5.0)
        swe = np.full_like(lon, 12.0 if month.month in (12, 1, 2) else 0.0) * (1 + 0.2 * np.cos(lon * 3.0))
        cws = 0.4 + 0.3 * max(season, 0) + 0.0 * lon
        return sm, swe, cws

    def _cell_truth(self, lons, lats):
        """A function month -> coarse TWS anomaly (mm, north-up rows) = mean of the fine truth per cell."""
        sub = 5
        off = (np.arange(sub) + 0.5) / sub * 0.25 - 0.125
        LON, LAT = np.meshgrid((lons[:, None] + off[None]).ravel(), (lats[::-1][:, None] - off[None]).ravel())
        w = self.weights(LON, LAT)

        def cells(month):
            gw = sum(w[n] * self.monthly_mean(n, month) for n in LANDSCAPES)
            sm, swe, cws = self._components(LON, LAT, month)
            tws = gw + sm + swe + cws - 380.0
            return tws.reshape(len(lats), sub, len(lons), sub).mean(axis=(1, 3))

        return cells

    def write_models(self):
        """FLDAS-layout (fine) soil moisture + SWE and GLDAS-layout (0.25 deg) canopy + SWE monthly files."""
        fl = self.root / "fldas"
        gl = self.root / "gldas"
        fl.mkdir(parents=True, exist_ok=True)
        gl.mkdir(parents=True, exist_ok=True)
        grid = self.grid(self.model_pixel, margin=0.1)
        lon, lat = self.centres(grid)
        x, y = lon[0], lat[::-1, 0]  # file order: ascending
        glon = np.arange(107.625, 109.5, 0.25)
        glat = np.arange(38.125, 40.0, 0.25)
        GLON, GLAT = np.meshgrid(glon, glat)
        thick = (0.1, 0.3, 0.6, 1.0)
        fl_files, gl_files = [], []
        for m in self.months:
            sm, swe, _ = self._components(lon, lat, m)
            path = fl / ("FLDAS_NOAH01_C_GL_M.A%04d%02d.001.nc" % (m.year, m.month))
            with netcdf_file(str(path), "w") as f:
                _nc_dimensions(f, (("time", 1), ("Y", len(y)), ("X", len(x))))
                _nc_variable(f, "X", "f4", ("X",), x, units="degrees_east", standard_name="longitude")
                _nc_variable(f, "Y", "f4", ("Y",), y, units="degrees_north", standard_name="latitude")
                _nc_variable(
                    f, "time", "f4", ("time",), [(m - dt.date(1982, 1, 1)).days], units="days since 1982-01-01 00:00:00"
                )
                for (name, z0, z1), dz in zip(
                    (
                        ("SoilMoi00_10cm_tavg", 0, 10),
                        ("SoilMoi10_40cm_tavg", 10, 40),
                        ("SoilMoi40_100cm_tavg", 40, 100),
                        ("SoilMoi100_200cm_tavg", 100, 200),
                    ),
                    thick,
                ):
                    v = f.createVariable(name, "f4", ("time", "Y", "X"))
                    v[:] = (sm * dz / 2.0 / (dz * 1000.0))[::-1][None].astype(np.float32)  # volumetric
                    v.units, v._FillValue, v.missing_value = "m^3 m-3", np.float32(-9999.0), np.float32(-9999.0)
                v = f.createVariable("SWE_inst", "f4", ("time", "Y", "X"))
                v[:] = swe[::-1][None].astype(np.float32)
                v.units, v._FillValue, v.missing_value = "kg m-2", np.float32(-9999.0), np.float32(-9999.0)
            fl_files.append(str(path))
            _, gswe, gcws = self._components(GLON, GLAT, m)
            path = gl / ("GLDAS_NOAH025_M.A%04d%02d.021.nc4" % (m.year, m.month))
            with netcdf_file(str(path), "w") as f:
                _nc_dimensions(f, (("time", 1), ("lat", len(glat)), ("lon", len(glon))))
                _nc_variable(f, "lon", "f4", ("lon",), glon, units="degrees_east")
                _nc_variable(f, "lat", "f4", ("lat",), glat, units="degrees_north")
                _nc_variable(
                    f, "time", "f8", ("time",), [(m - dt.date(2000, 1, 1)).days], units="days since 2000-01-01 00:00:00"
                )
                for name, arr in (("CanopInt_inst", gcws), ("SWE_inst", gswe)):
                    v = f.createVariable(name, "f4", ("time", "lat", "lon"))
                    v[:] = arr[None].astype(np.float32)
                    v.units, v._FillValue, v.missing_value = "kg m-2", np.float32(-9999.0), np.float32(-9999.0)
            gl_files.append(str(path))
        # fine-grid model TWS (soil moisture + SWE + canopy, mm) as a time-series GeoTIFF, for users without FLDAS
        return fl_files, gl_files

    def write_areas(self):
        feats = []
        for name, ((x0, x1, y0, y1), sy, lag) in LANDSCAPES.items():
            feats.append(
                {
                    "type": "Feature",
                    "properties": {"area": name, "sy": sy},
                    "geometry": {
                        "type": "Polygon",
                        "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]],
                    },
                }
            )
        path = self.root / "areas.geojson"
        path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
        return path

    def write_factors(self, grid):
        """Geodetector drivers on a 0.01 deg grid; coal-mining intensity is planted as the strongest."""
        folder = self.root / "factors"
        folder.mkdir(parents=True, exist_ok=True)
        g = self.grid(0.01)
        lon, lat = self.centres(g)
        w = self.weights(lon, lat)
        cx, cy, sig, _ = BOWL
        smooth = lambda s: gaussian_filter(self.rng.normal(0, 1, lon.shape), s)  # noqa: E731
        factors = {
            "coal_mining_intensity": np.exp(-((lon - cx) ** 2 + (lat - cy) ** 2) / (2 * (1.3 * sig) ** 2)) * w["mining"]
            + 0.05 * np.abs(smooth(2)),
            "groundwater_decline": 30 * w["mining"] + 25 * w["irrigation"] + 10 * w["desert"] + 10 * smooth(4),
            "ndvi": 0.15 + 0.5 * w["irrigation"] + 0.05 * smooth(3),
            "dem": 1100 + 300 * (lat - LAT0) + 80 * smooth(8),
            "precipitation": 250 + 120 * (LON1 - lon) + 10 * smooth(6),
        }
        paths = {}
        for name, arr in factors.items():
            p = folder / (name + ".tif")
            rasters.write_raster(p, g, arr, band_names=[name], units="")
            paths[name] = str(p)
        return paths

    def write_leveling(self, epochs):
        pts = [(108.2 + dx, 38.8 + dy) for dx, dy in ((0, 0), (0.03, 0), (-0.04, 0.02), (0.08, -0.05))]
        pts += [(108.55, 38.9), (108.65, 39.2), (108.1, 39.2), (108.3, 39.1)]
        surveys = [e for e in epochs if e.month in (4, 10) and e.day <= 12]
        rows = ["id,lon,lat,date,displacement_mm"]
        for i, (x, y) in enumerate(pts):
            base = self.displacement(np.array([x]), np.array([y]), self.days(surveys[0]))[0]
            for s in surveys:
                v = self.displacement(np.array([x]), np.array([y]), self.days(s))[0] - base + self.rng.normal(0, 1.5)
                rows.append("BM%02d,%.5f,%.5f,%s,%.2f" % (i + 1, x, y, s.isoformat(), v))
        path = self.root / "leveling.csv"
        path.write_text("\n".join(rows) + "\n")
        return path

    def write_wells(self):
        rows = ["id,lon,lat,date,head_m,sy"]
        wells = [
            ("W%02d" % (i + 1), name, x, y)
            for i, (name, x, y) in enumerate(
                [
                    ("desert", 108.15, 39.25),
                    ("desert", 108.3, 39.15),
                    ("mining", 108.25, 38.75),
                    ("mining", 108.1, 38.7),
                    ("irrigation", 108.6, 39.0),
                    ("irrigation", 108.7, 38.8),
                ]
            )
        ]
        for wid, name, x, y in wells:
            sy = LANDSCAPES[name][1]
            for m in self.months:
                mid = m + dt.timedelta(days=14)
                head = 1050.0 + self.monthly_mean(name, m) / (sy * 1000.0) + self.rng.normal(0, 0.03)
                rows.append("%s,%.4f,%.4f,%s,%.3f,%.3f" % (wid, x, y, mid.isoformat(), head, sy))
        path = self.root / "wells.csv"
        path.write_text("\n".join(rows) + "\n")
        return path

    def generate(self):
        """Write every input and the truth; returns a dict of paths and facts."""
        self.root.mkdir(parents=True, exist_ok=True)
        truth_dir = self.root / "truth"
        truth_dir.mkdir(exist_ok=True)
        grid, epochs, pairs, ifgs, truth_ts, lake = self.write_insar()
        hyp3 = self.write_hyp3(epochs)
        lon, lat = self.centres(grid)
        rate = self.velocity(lon, lat)
        rate[lake] = np.nan
        rasters.write_raster(truth_dir / "inelastic_rate.tif", grid, rate, band_names=["rate"], units="mm/yr")
        # what an SBAS mean velocity estimates: the least-squares slope of the whole planted displacement
        # (inelastic rate + the trend of the elastic groundwater response + thermal term)
        t = np.array([(e - epochs[0]).days / 365.25 for e in epochs])
        X = np.stack([np.ones_like(t), t], 1)
        vel = np.linalg.lstsq(X, truth_ts.reshape(len(t), -1), rcond=None)[0][1].reshape(rate.shape)
        rasters.write_raster(truth_dir / "velocity_truth.tif", grid, vel, band_names=["velocity"], units="mm/yr")
        rasters.write_raster(truth_dir / "displacement_truth.tif", grid, truth_ts, dates=epochs)
        regional = self.write_regional(truth_dir)
        raw = {} if self.tiny else self.write_insar_raw(grid, epochs, pairs, ifgs)
        grace, missing, shifted = self.write_grace()
        fldas, gldas = self.write_models()
        factors = self.write_factors(grid)
        gw = {n: [self.monthly_mean(n, m) for m in self.months] for n in LANDSCAPES}
        truth = {
            "epochs": [e.isoformat() for e in epochs],
            "pairs": len(pairs),
            "grace_missing_month": missing.isoformat()[:7],
            "grace_shifted_month": shifted.isoformat()[:7],
            "planted_lag_months": {n: LANDSCAPES[n][2] for n in LANDSCAPES},
            "specific_yield": {n: LANDSCAPES[n][1] for n in LANDSCAPES},
            "strongest_factor": "coal_mining_intensity",
            "months": [m.isoformat()[:7] for m in self.months],
            "groundwater_mm": gw,
            "velocity_truth": str(truth_dir / "velocity_truth.tif"),
            "displacement_truth": str(truth_dir / "displacement_truth.tif"),
        }
        truth.update({k: v for k, v in raw.items() if k.startswith("planted") or k == "small_patch_pixels"})
        (truth_dir / "truth.json").write_text(json.dumps(truth, indent=1))
        return {
            "insar_dir": str(self.root / "insar" / FRAME),
            "licsar_frame": str(self.root / "insar" / FRAME),
            "interferograms": ifgs,
            "coherence": [p.replace(".unw.tif", ".cc.tif") for p in ifgs],
            **hyp3,
            "grace": str(grace),
            "fldas": fldas,
            "gldas": gldas,
            "areas": str(self.write_areas()),
            "factors": factors,
            "leveling": str(self.write_leveling(epochs)),
            "wells": str(self.write_wells()),
            "truth": truth,
            "truth_dir": str(truth_dir),
            "regional": regional,
            **{k: v for k, v in raw.items() if k in ("raw_interferograms", "gacos", "deforming_areas")},
        }


def write_licsar_tif(path, grid, array):
    """A GeoTIFF as LiCSAR writes it: the array's data type, no NoData tag (0 means no data)."""
    from osgeo import gdal

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dtype = gdal.GDT_Byte if array.dtype == np.uint8 else gdal.GDT_Float32
    ds = gdal.GetDriverByName("GTiff").Create(str(path), grid.xsize, grid.ysize, 1, dtype, ["COMPRESS=DEFLATE"])
    ds.SetGeoTransform(grid.geotransform)
    ds.SetProjection(grid.projection)
    ds.GetRasterBand(1).WriteArray(array)
    ds = None
    return str(path)


HYP3_TXT = """Reference Granule: S1A_IW_SLC__1SDV_{d1}T224101_{d1}T224128_{o1:06d}_04A1B2_1C4D
Secondary Granule: S1A_IW_SLC__1SDV_{d2}T224101_{d2}T224128_{o2:06d}_04A3C4_2E5F
Reference Pass Direction: DESCENDING
Reference Orbit Number: {o1}
Secondary Pass Direction: DESCENDING
Secondary Orbit Number: {o2}
Baseline: {bperp:.4f}
UTC time: 81661.5
Heading: -167.0
Spacecraft height: 693000.0
Earth radius at nadir: 6369000.0
Slant range near: 800000.0
Slant range center: 850000.0
Slant range far: 900000.0
Range looks: 20
Azimuth looks: 4
INSAR phase filter: adf
Phase filter parameter: 0.6
Resolution of output (m): 80
Range bandpass filter: no
Azimuth bandpass filter: no
DEM source: GLO-30
DEM resolution (m): 160
Unwrapping type: mcf
Phase at reference point: {ref_phase:.5f}
Azimuth line of the reference point in SAR space: 0.0
Range pixel of the reference point in SAR space: 0.0
Y coordinate of the reference point in the map projection: {ry:.4f}
X coordinate of the reference point in the map projection: {rx:.4f}
Latitude of the reference point (WGS84): {lat:.7f}
Longitude of the reference point (WGS84): {lon:.7f}
Unwrapping threshold: none
Speckle filter: no
"""


def hyp3_txt(a, b, bperp, ref_phase, rx, ry, lon, lat):
    orbit = lambda d: 25000 + (d - dt.date(2019, 1, 1)).days * 175 // 12  # noqa: E731
    return HYP3_TXT.format(
        d1=a.strftime("%Y%m%d"),
        d2=b.strftime("%Y%m%d"),
        o1=orbit(a),
        o2=orbit(b),
        bperp=bperp,
        ref_phase=ref_phase,
        rx=rx,
        ry=ry,
        lon=lon,
        lat=lat,
    )


def write_hyp3_zip(folder, name, gt, wkt, layers, txt):
    """One HyP3 product zip ``<name>.zip`` holding ``<name>/<name>_<layer>.tif`` (float32, or uint8 water mask;
    NoData as HyP3 declares it), ``<name>/<name>.txt`` and the README."""
    import zipfile

    from osgeo import gdal

    zpath = Path(folder) / (name + ".zip")
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as z:
        for layer, (arr, nodata) in layers.items():
            mem = "/vsimem/%s_%s.tif" % (name, layer)
            dtype = gdal.GDT_Byte if arr.dtype == np.uint8 else gdal.GDT_Float32
            ds = gdal.GetDriverByName("GTiff").Create(mem, arr.shape[1], arr.shape[0], 1, dtype)
            ds.SetGeoTransform(gt)
            ds.SetProjection(wkt)
            if nodata is not None:
                ds.GetRasterBand(1).SetNoDataValue(nodata)
            ds.GetRasterBand(1).WriteArray(arr)
            ds = None
            f = gdal.VSIFOpenL(mem, "rb")
            gdal.VSIFSeekL(f, 0, 2)
            n = gdal.VSIFTellL(f)
            gdal.VSIFSeekL(f, 0, 0)
            data = gdal.VSIFReadL(1, n, f)
            gdal.VSIFCloseL(f)
            gdal.Unlink(mem)
            z.writestr("%s/%s_%s.tif" % (name, name, layer), data)
        z.writestr("%s/%s.txt" % (name, name), txt)
        z.writestr("%s/%s.README.md.txt" % (name, name), "ASF HyP3 InSAR product %s (demo world)\n" % name)
    return str(zpath)


def generate(root, small=False, tiny=False):
    """Generate the demo world in ``root`` (deterministic) and return the paths and truth.

    ``small`` is the CI demo; ``tiny`` a 32x32-pixel, two-year world for tests."""
    return World(root, small=small, tiny=tiny).generate()


if __name__ == "__main__":
    import sys

    out = generate(sys.argv[1] if len(sys.argv) > 1 else "demo_world", small="--small" in sys.argv)
    print(
        json.dumps(
            {
                k: v
                for k, v in out.items()
                if k not in ("interferograms", "coherence", "fldas", "gldas", "truth", "raw_interferograms", "gacos")
            },
            indent=1,
        )
    )


def for_demo(demo):
    """The demo's shared world (generated once into ``demo.data_dir/world`` and kept in ``demo.outputs``)."""
    w = demo.outputs.get("world")
    if isinstance(w, dict) and w.get("interferograms"):
        return w
    w = generate(demo.data_dir / "world", small=demo.small)
    demo.outputs["world"] = w
    demo.log(
        "generated the demo world in %s: %d interferograms on %d epochs, %d months of GRACE/FLDAS/GLDAS"
        % (demo.data_dir / "world", len(w["interferograms"]), len(w["truth"]["epochs"]), len(w["truth"]["months"]))
    )
    return w
