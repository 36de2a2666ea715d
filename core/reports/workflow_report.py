"""Summary report of the whole workflow (``subsidence:workflow``): maps, class series, lag and Geodetector tables.

No QGIS: it reads the workflow's output files (GeoTIFFs, CSV/GeoPackage tables) with GDAL/pandas and
draws with matplotlib when it imports (tables always). Used by the ``subsidence:workflowreport``
step of the shipped model and by the demo, so a run inside QGIS and the demo write the same page.

* Maps in map coordinates (longitude/latitude or projected x/y axes with units), with the
  study-area outlines (polygons as WKT in any CRS, transformed with OGR to each map's CRS);
* class series: one panel per study area (at most two per row, the figure never wider than the page);
* the best lag per group, with a recovered lag whose ``p_eff`` is not significant flagged as such;
* the Geodetector factor and top interaction tables, p-values in scientific notation.
"""

import html
import os

import numpy as np

from ..io.lazy import lazy_module
from . import html_tools as ht

pd = lazy_module("pandas")

ALPHA = 0.05
MAX_FIG_WIDTH_IN = 10.0  # 900 px at 90 dpi: fits the 1100 px page


def read_table(path):
    """A CSV or OGR table (GeoPackage, ...) as a DataFrame (geometry ignored); a DataFrame passes through."""
    if isinstance(path, pd.DataFrame):
        return numeric_columns(path)
    path = str(path)
    if path.lower().endswith(".csv"):
        return numeric_columns(pd.read_csv(path))
    from osgeo import ogr

    src = path.split("|")[0]
    layer_name = None
    if "|layername=" in path:
        layer_name = path.split("|layername=")[1].split("|")[0]
    ds = ogr.Open(src)
    if ds is None:
        raise ValueError("cannot open the table %s" % path)
    lyr = ds.GetLayerByName(layer_name) if layer_name else ds.GetLayer(0)
    defn = lyr.GetLayerDefn()
    names = [defn.GetFieldDefn(i).GetName() for i in range(defn.GetFieldCount())]
    rows = [[f.GetField(n) for n in names] for f in lyr]
    return numeric_columns(pd.DataFrame(rows, columns=names))


def numeric_columns(df):
    """Text columns whose non-empty values are all numbers become numbers (a CSV read by OGR is all text)."""
    df = df.copy()
    for c in df.columns:
        if df[c].dtype == object:
            text = df[c].astype(str).str.strip()
            empty = df[c].isna() | (text == "") | (text.str.upper() == "NULL")
            num = pd.to_numeric(text.where(~empty), errors="coerce")
            if num[~empty].notna().all():  # (an all-empty column becomes NaN)
                df[c] = num
    return df


def _true(series):
    return series.astype(str).str.lower().isin(["1", "true", "yes"])


def best_lags(lag_table, alpha=ALPHA):
    """Best lag per group and series, with ``significant`` (p_eff < alpha) and a ``verdict`` text."""
    t = lag_table[_true(lag_table["best_lag"])].copy() if "best_lag" in lag_table else lag_table.copy()
    p = pd.to_numeric(t.get("p_eff"), errors="coerce")
    t["significant"] = p < alpha
    t["verdict"] = np.where(
        t["significant"],
        "recovered lag (p_eff < %g)" % alpha,
        "not significant (p_eff \u2265 %g): not a result" % alpha,
    )
    return t


# --------------------------------------------------------------------------- maps
def _raster(path, band=None):
    from osgeo import gdal, osr

    ds = gdal.Open(str(path))
    if ds is None:
        raise ValueError("cannot open %s" % path)
    b = ds.GetRasterBand(band or 1)
    a = b.ReadAsArray().astype(np.float64)
    nd = b.GetNoDataValue()
    if nd is not None and not np.isnan(nd):
        a[a == nd] = np.nan
    gt = ds.GetGeoTransform()
    extent = (gt[0], gt[0] + gt[1] * ds.RasterXSize, gt[3] + gt[5] * ds.RasterYSize, gt[3])
    srs = osr.SpatialReference()
    wkt = ds.GetProjection()
    geographic = True
    if wkt:
        srs.ImportFromWkt(wkt)
        geographic = bool(srs.IsGeographic())
    return a, extent, wkt, geographic, b.GetDescription(), ds.RasterCount


def _outline_xy(wkt, src_wkt, dst_wkt):
    """Exterior rings of a (multi)polygon WKT as [(x, y)] arrays in the CRS ``dst_wkt``."""
    from osgeo import ogr, osr

    g = ogr.CreateGeometryFromWkt(wkt)
    if g is None:
        return []
    if src_wkt and dst_wkt:
        s, d = osr.SpatialReference(), osr.SpatialReference()
        s.ImportFromWkt(src_wkt)
        d.ImportFromWkt(dst_wkt)
        for r in (s, d):
            r.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        if not s.IsSame(d):
            g.Transform(osr.CoordinateTransformation(s, d))
    rings = []
    polys = [g.GetGeometryRef(i) for i in range(g.GetGeometryCount())] if g.GetGeometryName() == "MULTIPOLYGON" else [g]
    for p in polys:
        if p is None or p.GetGeometryCount() == 0:
            continue
        ring = p.GetGeometryRef(0)
        pts = np.array([ring.GetPoint_2D(i) for i in range(ring.GetPointCount())])
        if len(pts):
            rings.append(pts)
    return rings


def map_panel(ax, fig, path, title, outlines=(), band=None, units="mm"):
    """Draw one raster (diverging ramp centred on 0, 2-98 % limits) in map coordinates with outlines."""
    a, extent, wkt, geographic, desc, count = _raster(path, band)
    finite = a[np.isfinite(a)]
    lim = float(np.nanpercentile(np.abs(finite), 98)) if finite.size else 1.0
    im = ax.imshow(a, cmap="RdBu", vmin=-lim, vmax=lim, extent=extent, interpolation="nearest")
    for name, owkt, ocrs in outlines:
        for k, xy in enumerate(_outline_xy(owkt, ocrs, wkt)):
            ax.plot(xy[:, 0], xy[:, 1], "-", color="black", linewidth=1.0)
            if k == 0 and name:
                cx, cy = xy[:, 0].mean(), xy[:, 1].mean()
                ax.annotate(
                    str(name),
                    (cx, cy),
                    fontsize=8,
                    ha="center",
                    va="center",
                    bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.7),
                )
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    if geographic:
        ax.set_xlabel("Longitude (\u00b0)")
        ax.set_ylabel("Latitude (\u00b0)")
        ax.set_aspect(1.0 / max(0.1, np.cos(np.deg2rad(0.5 * (extent[2] + extent[3])))))
    else:
        ax.set_xlabel("Easting (m)")
        ax.set_ylabel("Northing (m)")
        ax.set_aspect("equal")
        ax.ticklabel_format(style="plain", useOffset=False)
    ax.tick_params(labelsize=8)
    for lbl in ax.get_xticklabels():
        lbl.set_rotation(30)
    ax.set_title(title + (" %s" % desc if desc and count > 1 else ""), fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.85, label=units)
    return im


def maps_figure(velocity, gwsa, outlines, Figure):
    fig = Figure(figsize=(MAX_FIG_WIDTH_IN, 4.4), constrained_layout=True)
    ax1, ax2 = fig.subplots(1, 2)
    map_panel(ax1, fig, velocity, "SBAS LOS velocity", outlines, units="mm/yr")
    from osgeo import gdal

    n = gdal.Open(str(gwsa)).RasterCount
    map_panel(ax2, fig, gwsa, "GWSA", outlines, band=n, units="mm")
    return fig


def class_series_figure(tab, Figure):
    """Per area: cumulative change of deformation and GWSA of the class with the most points."""
    tab = tab.copy()
    tab["date"] = pd.to_datetime(tab["date"])
    areas = list(dict.fromkeys(tab["area"]))
    ncols = min(2, len(areas))
    nrows = int(np.ceil(len(areas) / ncols))
    fig = Figure(figsize=(MAX_FIG_WIDTH_IN, 3.3 * nrows), constrained_layout=True)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    import matplotlib.dates as mdates

    layers = list(dict.fromkeys(tab["layer"]))
    defo = "deformation" if "deformation" in layers else layers[0]
    other = [x for x in layers if x != defo]
    for ax, area in zip(axes, areas):
        sub = tab[tab["area"] == area]
        cls = sub.groupby("class")["n"].max().idxmax()
        d = sub[(sub["class"] == cls) & (sub["layer"] == defo)]
        ax.plot(d["date"], d["cumulative_change"], "o-", ms=3, color="tab:blue", label="%s (mm)" % defo)
        ax.set_ylabel("%s, cumulative (mm)" % defo, color="tab:blue", fontsize=9)
        if other:
            g = sub[(sub["class"] == cls) & (sub["layer"] == other[0])]
            ax2 = ax.twinx()
            ax2.plot(g["date"], g["cumulative_change"], "s--", ms=3, color="tab:red")
            ax2.set_ylabel("%s, cumulative (mm)" % other[0].upper(), color="tab:red", fontsize=9)
            ax2.tick_params(labelsize=8)
        ax.set_title("%s, %s class" % (area, cls), fontsize=10)
        loc = mdates.AutoDateLocator(minticks=3, maxticks=6)
        ax.xaxis.set_major_locator(loc)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc))
        ax.tick_params(labelsize=8)
        ax.grid(True, alpha=0.3)
    for ax in axes[len(areas) :]:
        ax.set_visible(False)
    fig.suptitle("Cumulative change from the first month (class with the most points per area)", fontsize=11)
    return fig


# --------------------------------------------------------------------------- page
def html_report(
    velocity,
    gwsa,
    class_table,
    lag_table,
    factor_table=None,
    interaction_table=None,
    outlines=(),
    links=None,
    title="Subsidence\u2013groundwater workflow report",
    intro="",
    sections_before=(),
    plots=True,
    alpha=ALPHA,
):
    """The page (str). Paths of the workflow outputs; ``outlines`` = [(name, polygon WKT, CRS WKT)];
    ``links`` = {label: relative path} of the detailed reports; ``sections_before``: extra HTML parts
    placed before the maps (the demo puts its comparison with the planted truth there)."""
    e = html.escape
    parts = ["<h1>%s</h1>" % e(title)]
    if intro:
        parts.append("<p>%s</p>" % intro)
    parts += list(sections_before)
    Figure = ht.matplotlib_figure() if plots else None
    classes = read_table(class_table) if class_table is not None else None
    if Figure is not None:
        parts.append("<h2>Maps</h2>")
        try:
            parts.append(ht.figure_png(maps_figure(velocity, gwsa, outlines, Figure)))
        except Exception as ex:  # noqa: BLE001 - a failed figure must not lose the tables
            parts.append("<p class='warn'>map failed: %s</p>" % e(str(ex)))
        if classes is not None and len(classes):
            parts.append("<h2>Class series</h2>")
            try:
                parts.append(ht.figure_png(class_series_figure(classes, Figure)))
            except Exception as ex:  # noqa: BLE001
                parts.append("<p class='warn'>class series failed: %s</p>" % e(str(ex)))
    elif plots:
        parts.append("<p>(matplotlib is not available: tables only)</p>")
    if lag_table is not None:
        lags = best_lags(read_table(lag_table), alpha)
        cols = [c for c in ("group", "series", "lag", "n", "r", "p", "n_eff", "p_eff", "verdict") if c in lags]
        n_bad = int((~lags["significant"]).sum())
        parts.append(
            "<h2>Lagged correlation: best lag per group</h2>"
            "<p>Lag k: GWSA leads deformation by k months. Significance is judged by p<sub>eff</sub> "
            "(autocorrelation-corrected, Bretherton et al. 1999); green rows are significant at "
            "%g, orange rows are <b>not</b> a recovered lag.</p>" % alpha
        )
        if n_bad:
            parts.append(
                "<p class='warn'>%d of %d best lags are not significant (p<sub>eff</sub> &ge; %g): "
                "their lag is the largest r among noise, not a result.</p>" % (n_bad, len(lags), alpha)
            )
        parts.append(
            ht.table(
                lags[cols],
                p_columns=("p", "p_eff"),
                text_columns=("group", "series", "verdict"),
                row_class=lambda r: "sig" if r.get("verdict", "").startswith("recovered") else "warnrow",
            )
        )
    if factor_table is not None:
        fac = read_table(factor_table).sort_values("q", ascending=False)
        cols = [
            c
            for c in (
                "factor",
                "method",
                "classes",
                "n",
                "strata",
                "q",
                "q_ci_low",
                "q_ci_high",
                "q_adj",
                "q_null",
                "p_wang",
                "p_anova",
            )
            if c in fac
        ]
        parts.append("<h2>Geodetector: factor detector</h2>")
        parts.append(
            ht.table(
                fac[cols],
                p_columns=("p_wang", "p_anova"),
                text_columns=("factor", "method"),
                row_class=lambda r: "sig" if not ht.is_missing(r.get("p_wang")) and float(r["p_wang"]) < alpha else "",
            )
        )
    if interaction_table is not None:
        inter = read_table(interaction_table)
        if "q_ab" in inter:
            inter = inter.sort_values("q_ab", ascending=False)
            cols = [
                c
                for c in ("factor_a", "factor_b", "q_a", "q_b", "q_ab", "type", "p_wang_ab", "p_enhance")
                if c in inter
            ]
            parts.append("<h2>Geodetector: interactions (top 10)</h2>")
            parts.append(
                ht.table(
                    inter[cols],
                    p_columns=("p_wang_ab", "p_enhance"),
                    text_columns=("factor_a", "factor_b", "type"),
                    max_rows=10,
                    missing_note="p_enhance is empty when no permutations were run.",
                )
            )
    if links:
        parts.append(
            "<p>Detailed reports: %s.</p>"
            % ", ".join("<a href='%s'>%s</a>" % (e(str(v)), e(k)) for k, v in links.items() if v)
        )
    return ht.page(title, parts)


def write_html_report(path, *args, **kwargs):
    """Write :func:`html_report` to ``path`` atomically; links are made relative to its folder."""
    links = kwargs.get("links")
    if links:
        folder = os.path.dirname(os.path.abspath(str(path)))
        rel = {}
        for k, v in links.items():
            if v:
                try:
                    rel[k] = os.path.relpath(str(v), folder)
                except ValueError:  # another drive (Windows)
                    rel[k] = str(v)
        kwargs["links"] = rel
    return ht.write_text_atomic(path, html_report(*args, **kwargs))
