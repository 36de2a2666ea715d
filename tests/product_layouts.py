"""Small stacks written exactly as LiCSAR and HyP3 ship them, and the same data in our own convention.

Used by the core, algorithm and headless tests of the product reader layer (``core/insar/products.py``).
LiCSAR: ``GEOC/YYYYMMDD_YYYYMMDD/YYYYMMDD_YYYYMMDD.geo.unw.tif`` (float32 rad, 0 = no data, no NoData tag),
``.geo.cc.tif`` (uint8 0-255, 0 = no data), ``metadata/<frame>.geo.E/N/U/hgt.tif`` (0 = no data) and a
``baselines`` file (``primary secondary bperp btemp`` per epoch). HyP3: one zip (or folder) per product named
``S1AA_<date1>T<time>_<date2>T<time>_VVP<days>_INT80_G_ueF_<id>`` holding ``<name>_unw_phase.tif``,
``_corr.tif`` (float32, NoData 0 declared), ``_lv_theta.tif``, ``_lv_phi.tif`` (radians), ``_dem.tif``,
``_water_mask.tif`` (uint8) and ``<name>.txt``, each product on its own extent of one UTM grid lattice.
"""

import datetime as dt
import math
import os
import zipfile

import numpy as np
from osgeo import gdal, osr

FRAME = "062D_05567_131313"
WAVELENGTH = 0.05546576


def _write(path, array, gt, epsg, dtype=gdal.GDT_Float32, nodata=None):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    ds = gdal.GetDriverByName("GTiff").Create(str(path), array.shape[1], array.shape[0], 1, dtype)
    ds.SetGeoTransform(tuple(gt))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    ds.SetProjection(srs.ExportToWkt())
    b = ds.GetRasterBand(1)
    if nodata is not None:
        b.SetNoDataValue(nodata)
    b.WriteArray(array)
    ds = None
    return str(path)


def epochs(n=7, start=dt.date(2020, 1, 3)):
    skip = {3}
    out, d, i = [], start, 0
    while len(out) < n:
        if i not in skip:
            out.append(d)
        d += dt.timedelta(days=12)
        i += 1
    return out


def network(dates, max_days=40):
    return [(a, b) for i, a in enumerate(dates) for b in dates[i + 1 :] if (b - a).days <= max_days]


def truth_stack(shape, dates, seed=3):
    """Phase (rad) per pair from a planted displacement history; coherence uint8; masks of no data."""
    rng = np.random.default_rng(seed)
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    bowl = np.exp(-((yy - ny / 2) ** 2 + (xx - nx / 2) ** 2) / (2 * (min(ny, nx) / 4) ** 2))
    vel = -40.0 * bowl  # mm/yr
    t = np.array([(d - dates[0]).days for d in dates]) / 365.25
    disp = {d: vel * t[i] + rng.normal(0, 0.5, shape) for i, d in enumerate(dates)}
    to_rad = -4 * math.pi / (WAVELENGTH * 1000.0)
    pairs = network(dates)
    phase, coh = {}, {}
    for a, b in pairs:
        ph = (to_rad * (disp[b] - disp[a])).astype(np.float32)
        c = np.clip(200 - 2 * (b - a).days + rng.integers(-20, 20, shape), 1, 255).astype(np.uint8)
        hole = rng.random(shape) < 0.05  # no data: 0 in both files
        ph[hole] = 0.0
        c[hole] = 0
        phase[(a, b)] = ph
        coh[(a, b)] = c
    return pairs, phase, coh


def stem(a, b):
    return "%s_%s" % (a.strftime("%Y%m%d"), b.strftime("%Y%m%d"))


def bperp_of_epochs(dates):
    return {d: round(35.0 * math.sin(i * 1.7) + 4.0 * i, 2) if i else 0.0 for i, d in enumerate(dates)}


def write_licsar_frame(root, shape=(24, 30), dates=None, seed=3, with_geometry=True, flat_metadata=False):
    """A LiCSAR frame download under ``root``. Returns a dict of what was written (truth included)."""
    dates = dates or epochs()
    pairs, phase, coh = truth_stack(shape, dates, seed)
    gt = (110.0, 0.001, 0.0, 36.0, 0.0, -0.001)
    geoc = os.path.join(str(root), "GEOC")
    unw_files, cc_files = [], []
    for a, b in pairs:
        s = stem(a, b)
        unw_files.append(_write(os.path.join(geoc, s, s + ".geo.unw.tif"), phase[(a, b)], gt, 4326))
        cc_files.append(_write(os.path.join(geoc, s, s + ".geo.cc.tif"), coh[(a, b)], gt, 4326, gdal.GDT_Byte))
    meta = geoc if flat_metadata else os.path.join(str(root), "metadata")
    geometry = {}
    if with_geometry:
        ny, nx = shape
        inc = np.radians(np.linspace(31.0, 46.0, nx))[None, :].repeat(ny, 0)
        head = np.radians(-170.0)
        u = np.cos(inc)
        e = -np.sin(inc) * np.cos(head)
        n = np.sin(inc) * np.sin(head)
        for k, v in (("E", e), ("N", n), ("U", u)):
            v = v.astype(np.float32)
            v[0, :3] = 0.0  # LiCSAR no data
            geometry[k] = v
            _write(os.path.join(meta, "%s.geo.%s.tif" % (FRAME, k)), v, gt, 4326)
        hgt = (400 + 10 * np.arange(nx))[None, :].repeat(ny, 0).astype(np.float32)
        geometry["hgt"] = hgt
        _write(os.path.join(meta, "%s.geo.hgt.tif" % FRAME), hgt, gt, 4326)
    bp = bperp_of_epochs(dates)
    os.makedirs(meta, exist_ok=True)
    with open(os.path.join(meta, "baselines"), "w") as f:
        for d in dates[1:]:
            f.write(
                "%s %s %.2f %.1f\n" % (dates[0].strftime("%Y%m%d"), d.strftime("%Y%m%d"), bp[d], (d - dates[0]).days)
            )
    return {
        "root": str(root),
        "dates": dates,
        "pairs": pairs,
        "phase": phase,
        "coh": coh,
        "gt": gt,
        "epsg": 4326,
        "unw": unw_files,
        "cc": cc_files,
        "geometry": geometry,
        "bperp_epochs": bp,
        "shape": shape,
    }


HYP3_TXT = """Reference Granule: S1A_IW_SLC__1SDV_{d1}T103522_{d1}T103549_031000_038F5E_1A2B
Secondary Granule: S1A_IW_SLC__1SDV_{d2}T103522_{d2}T103549_031175_039575_3C4D
Reference Pass Direction: DESCENDING
Reference Orbit Number: 31000
Secondary Pass Direction: DESCENDING
Secondary Orbit Number: 31175
Baseline: {bperp}
UTC time: 37522.5
Heading: -167.9
Spacecraft height: 693000.0
Earth radius at nadir: 6371000.0
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
Phase at reference point: -4.21967
Azimuth line of the reference point in SAR space: 2737.0
Range pixel of the reference point in SAR space: 739.0
Y coordinate of the reference point in the map projection: {ref_y}
X coordinate of the reference point in the map projection: {ref_x}
Latitude of the reference point (WGS84): 37.1542125
Longitude of the reference point (WGS84): 117.3
Unwrapping threshold: none
Speckle filter: no
"""


def hyp3_name(a, b, k, kind="gamma"):
    if kind == "burst":
        return "S1_136231_IW2_%s_%s_VV_INT80_%04X" % (a.strftime("%Y%m%d"), b.strftime("%Y%m%d"), 0x1000 + k)
    if kind == "multiburst":
        return "S1_064_000000s1n00-136231s2n02-000000s3n00_IW_%s_%s_VV_INT80_%04X" % (
            a.strftime("%Y%m%d"),
            b.strftime("%Y%m%d"),
            0x2000 + k,
        )
    return "S1AA_%sT103522_%sT103522_VVP%03d_INT80_G_ueF_%04X" % (
        a.strftime("%Y%m%d"),
        b.strftime("%Y%m%d"),
        (b - a).days,
        0x3000 + k,
    )


def write_hyp3_folder(
    root,
    shape=(24, 30),
    dates=None,
    seed=5,
    zipped=True,
    epsg=32650,
    kind="gamma",
    other_zone=(),
    drop=None,
    with_geometry=True,
):
    """A HyP3 download folder: one zip (or folder) per product, each on its own extent of one 80 m lattice.

    Every product covers the common area (rows 3..3+ny, cols 2..2+nx of a larger lattice) plus a margin that
    differs per product. ``other_zone``: indices of products written in the next UTM zone (same lattice numbers,
    other CRS). ``drop``: {index: layer} to leave a layer out of a product. Returns a dict with the truth on the
    common area and what was written."""
    dates = dates or epochs()
    pairs, phase, coh = truth_stack(shape, dates, seed)
    rng = np.random.default_rng(seed + 1)
    ny, nx = shape
    x0, y0, px = 400000.0, 4100000.0, 80.0
    bp = bperp_of_epochs(dates)
    products = []
    os.makedirs(str(root), exist_ok=True)
    for k, (a, b) in enumerate(pairs):
        name = hyp3_name(a, b, k, kind)
        top, left = int(rng.integers(0, 4)), int(rng.integers(0, 3))  # margin above / left of the common area
        bottom, right = int(rng.integers(0, 4)), int(rng.integers(0, 3))
        if k == 0:
            top = left = 0  # the common area is exactly the intersection
        elif k == 1:
            bottom = right = 0
        H, W = ny + top + bottom, nx + left + right
        # common area at lattice rows 3..3+ny, cols 2..2+nx; the product starts at (3 - top, 2 - left)
        gt = (x0 + (2 - left) * px, px, 0.0, y0 - (3 - top) * px, 0.0, -px)
        unw = np.zeros((H, W), np.float32)
        cor = np.zeros((H, W), np.float32)
        margin_ph = rng.normal(0, 3, (H, W)).astype(np.float32)
        unw[:] = margin_ph
        cor[:] = rng.uniform(0.2, 0.9, (H, W)).astype(np.float32)
        ph = phase[(a, b)].copy()
        c = (coh[(a, b)].astype(np.float32) / np.float32(255)).astype(np.float32)
        unw[top : top + ny, left : left + nx] = ph  # holes are 0 = the declared NoData
        cor[top : top + ny, left : left + nx] = c
        files = {}
        folder = os.path.join(str(root), name)
        ep = epsg
        if other_zone and k in other_zone:
            # the same ground in the next UTM zone, on that zone's own 80 m lattice
            ep = epsg + 1
            src, dst = osr.SpatialReference(), osr.SpatialReference()
            src.ImportFromEPSG(epsg)
            dst.ImportFromEPSG(ep)
            src.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
            dst.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
            x, y, _ = osr.CoordinateTransformation(src, dst).TransformPoint(gt[0], gt[3])
            gt = (round(x / px) * px, px, 0.0, round(y / px) * px, 0.0, -px)
        lay = {"unw_phase": (unw, gdal.GDT_Float32, 0.0), "corr": (cor, gdal.GDT_Float32, 0.0)}
        if with_geometry:
            theta = np.radians(90.0 - np.linspace(30.0, 45.0, W))[None, :].repeat(H, 0).astype(np.float32)
            phi = np.full((H, W), np.radians(-100.0), np.float32)
            lay.update(
                {
                    "lv_theta": (theta, gdal.GDT_Float32, 0.0),
                    "lv_phi": (phi, gdal.GDT_Float32, 0.0),
                    "dem": ((300 + np.arange(W))[None, :].repeat(H, 0).astype(np.float32), gdal.GDT_Float32, None),
                    "water_mask": (np.ones((H, W), np.uint8), gdal.GDT_Byte, None),
                }
            )
        for layer, (arr, dtype, nd) in lay.items():
            if drop and drop.get(k) == layer:
                continue
            files[layer] = _write(os.path.join(folder, "%s_%s.tif" % (name, layer)), arr, gt, ep, dtype, nd)
        ref_x, ref_y = gt[0] + 0.5 * px, gt[3] - (H - 0.5) * px
        txt = os.path.join(folder, name + ".txt")
        with open(txt, "w") as f:
            f.write(
                HYP3_TXT.format(
                    d1=a.strftime("%Y%m%d"),
                    d2=b.strftime("%Y%m%d"),
                    bperp="%.4f" % (bp[b] - bp[a]),
                    ref_x=ref_x,
                    ref_y=ref_y,
                )
            )
        with open(os.path.join(folder, name + ".README.md.txt"), "w") as f:
            f.write("ASF HyP3 InSAR product %s\n" % name)
        path = folder
        if zipped:
            path = folder + ".zip"
            with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
                for fn in sorted(os.listdir(folder)):
                    z.write(os.path.join(folder, fn), name + "/" + fn)
            for fn in os.listdir(folder):
                os.remove(os.path.join(folder, fn))
            os.rmdir(folder)
        products.append(
            {
                "name": name,
                "path": path,
                "gt": gt,
                "shape": (H, W),
                "epsg": ep,
                "files": files,
                "bperp": bp[b] - bp[a],
                "ref_xy": (ref_x, ref_y),
            }
        )
    common_gt = (x0 + 2 * px, px, 0.0, y0 - 3 * px, 0.0, -px)
    return {
        "root": str(root),
        "dates": dates,
        "pairs": pairs,
        "phase": phase,
        "coh": coh,
        "products": products,
        "common_gt": common_gt,
        "epsg": epsg,
        "shape": shape,
        "bperp_epochs": bp,
    }


def write_own_convention(folder, layout, gt=None, epsg=None):
    """The same data in our own convention: float32 coherence = uint8 / 255, NaN instead of 0 (NoData NaN),
    clipped to the common area. Returns (interferogram paths, coherence paths, pairs CSV path)."""
    os.makedirs(str(folder), exist_ok=True)
    gt = gt or layout.get("gt") or layout["common_gt"]
    epsg = epsg or layout["epsg"]
    ifgs, cohs = [], []
    rows = ["file,reference,secondary,bperp"]
    bp = layout["bperp_epochs"]
    for a, b in layout["pairs"]:
        s = stem(a, b)
        ph = layout["phase"][(a, b)].astype(np.float32).copy()
        c = layout["coh"][(a, b)].astype(np.float32) / np.float32(255)
        ph[ph == 0] = np.nan
        c[layout["coh"][(a, b)] == 0] = np.nan
        ifgs.append(_write(os.path.join(str(folder), s + "_phase.tif"), ph, gt, epsg, nodata=float("nan")))
        cohs.append(_write(os.path.join(str(folder), s + "_coherence.tif"), c, gt, epsg, nodata=float("nan")))
        rows.append("%s_phase.tif,%s,%s,%.4f" % (s, a.isoformat(), b.isoformat(), bp[b] - bp[a]))
    csv = os.path.join(str(folder), "pairs.csv")
    with open(csv, "w") as f:
        f.write("\n".join(rows) + "\n")
    return ifgs, cohs, csv
