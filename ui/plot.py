"""Matplotlib plot of time series for the dock (Qt canvas, no pyplot global state).

Twin axes follow the rule of :mod:`core.timeseries.pixel_series`: deformation series on
the left y axis, water-storage series (GWSA/TWSA/groundwater ...) on the right
one, which exists only when both families are plotted.

Readable at any dock size (from about 380 x 300 px):

* **one colour per picked point / polygon** (``Series.group``, e.g. ``P1``), shared by its
  deformation and storage lines; **line style and marker per layer** (solid/circles for
  deformation, dashed/squares for storage), so the legend is compact: one entry per point and one
  per layer (``N + M`` entries, not ``N x M``), above the axes;
* concise date ticks (:class:`matplotlib.dates.ConciseDateFormatter`) with a tick count that
  follows the axes width, font sizes that follow the figure size;
* the layout (constrained layout) is recomputed on every resize;
* optional aligned zeros of the two y axes;
* :meth:`SeriesPlot.save_png` exports at a fixed publication size (``EXPORT_SIZE_IN`` at
  ``EXPORT_DPI``), independent of the dock's size.
"""

MATPLOTLIB_MISSING = (
    "matplotlib is not available in this QGIS Python ({error}), so series cannot be plotted. "
    "Clicked series are still collected and can be exported as CSV. Install it with the package "
    "manager of your QGIS (e.g. 'apt install python3-matplotlib', or the OSGeo4W / pip 'matplotlib' package)."
)

# matplotlib's "tab10" (colour-blind-friendlier than arbitrary colours), usable without matplotlib
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")
LEFT_STYLES = (("-", "o"), ("-.", "^"), (":", "D"), ("-", "v"))
RIGHT_STYLES = (("--", "s"), ((0, (5, 1, 1, 1)), "P"), ("--", "X"), (":", "*"))
EXPORT_SIZE_IN = (7.5, 4.5)  # 1500 x 900 px at EXPORT_DPI
EXPORT_DPI = 200


def load_matplotlib():
    """Import the matplotlib pieces the plot needs; raises ImportError when missing."""
    import matplotlib
    import matplotlib.dates as mdates
    from matplotlib.figure import Figure

    try:  # matplotlib >= 3.5: follows the Qt binding already loaded (PyQt5 for QGIS 3, PyQt6 for QGIS 4)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
    except ImportError:  # older matplotlib (Qt5 only)
        from matplotlib.backends.backend_qt5agg import FigureCanvasQTAgg  # qt6-compat: matplotlib < 3.5

    return Figure, FigureCanvasQTAgg, mdates, matplotlib


def group_of(series):
    """The point/polygon a series belongs to (its colour): ``series.group``, else its label."""
    return getattr(series, "group", None) or series.label


def group_colors(series):
    """``{group: colour}`` in order of first appearance (the dock colours map markers the same way)."""
    out = {}
    for s in series:
        g = group_of(s)
        if g not in out:
            out[g] = PALETTE[len(out) % len(PALETTE)]
    return out


def _layer_name(series):
    src = getattr(series, "source", None)
    return getattr(src, "name", None) or series.label


def _axis_label(title, series):
    units = sorted({s.units for s in series if s.units})
    return "%s (%s)" % (title, ", ".join(units)) if units else title


def aligned_zero_limits(left, right):
    """Limits ``(left, right)`` of two y axes extended so that 0 sits at the same height on both."""
    (l0, l1), (r0, r1) = left, right
    l0, l1 = min(l0, 0.0), max(l1, 0.0)
    r0, r1 = min(r0, 0.0), max(r1, 0.0)
    if l1 - l0 <= 0 or r1 - r0 <= 0:
        return (l0, l1), (r0, r1)
    f = max(-l0 / (l1 - l0), -r0 / (r1 - r0))  # fraction of the height below zero
    if f >= 1.0:
        return (l0, 0.0), (r0, 0.0)

    def fit(lo, hi):
        # keep the larger extent, extend the other side so that -lo/(hi-lo) == f
        if hi > 0 and -lo / (hi - lo) < f:
            lo = -f * hi / (1.0 - f)
        elif lo < 0 and f > 0:
            hi = -lo * (1.0 - f) / f
        return lo, hi

    return fit(l0, l1), fit(r0, r1)


def draw_series(fig, series, mdates, align_zeros=False, compact=None):
    """Draw ``series`` into the (cleared) Figure ``fig``; returns ``(ax_left, ax_right, lines)``.

    ``compact``: smaller fonts and short axis titles (default: decided from the figure size).
    """
    fig.clear()
    width_px = fig.get_figwidth() * fig.dpi
    height_px = fig.get_figheight() * fig.dpi
    if compact is None:
        compact = width_px < 560 or height_px < 380
    fs = 7.5 if compact else 9.5
    left = [s for s in series if s.axis == "left"]
    right = [s for s in series if s.axis == "right"]
    left_title, right_title = (
        SeriesPlot.LEFT_TITLE,
        (SeriesPlot.RIGHT_TITLE_SHORT if compact else SeriesPlot.RIGHT_TITLE),
    )
    if not left:  # storage only: use the left axis
        left, right = right, []
        left_title = right_title
    ax = fig.add_subplot(111)
    ax_right = ax.twinx() if right else None
    lines = {}
    if not series:
        ax.text(
            0.5,
            0.5,
            "Click the map to plot the series of a pixel",
            ha="center",
            va="center",
            transform=ax.transAxes,
            color="0.4",
            fontsize=fs + 1,
        )
        ax.set_xticks([])
        ax.set_yticks([])
        return ax, None, lines
    colors = group_colors(series)
    layer_style = {}
    for fam, styles in ((left, LEFT_STYLES), (right, RIGHT_STYLES)):
        for s in fam:
            name = _layer_name(s)
            if name not in layer_style:
                k = sum(1 for n in layer_style.values() if n[2] is fam)
                layer_style[name] = styles[k % len(styles)] + (fam,)
    small_markers = max(len(s.dates) for s in series) > 60
    for s in series:
        on_right = ax_right is not None and s in right
        target = ax_right if on_right else ax
        ls, marker, _ = layer_style[_layer_name(s)]
        (line,) = target.plot(
            s.dates,
            s.values,
            linestyle=ls,
            marker=marker,
            markersize=2.0 if small_markers else 3.2,
            linewidth=1.2,
            color=colors[group_of(s)],
            label=s.label,
        )
        lines[s.label] = line
    ax.set_ylabel(_axis_label(left_title, left), fontsize=fs)
    if ax_right is not None:
        ax_right.set_ylabel(_axis_label(right_title, right), fontsize=fs)
        ax_right.tick_params(labelsize=fs)
    ax.tick_params(labelsize=fs)
    # concise date ticks, as many as the width allows (~55 px per label)
    axes_px = width_px * 0.75
    locator = mdates.AutoDateLocator(minticks=2, maxticks=max(3, int(axes_px / 55)))
    locator.intervald[mdates.MONTHLY] = [1, 2, 3, 4, 6, 12]  # long series in a narrow dock: yearly ticks
    locator.intervald[mdates.YEARLY] = [1, 2, 4, 5, 10, 20, 50, 100]
    ax.xaxis.set_major_locator(locator)
    formatter = mdates.ConciseDateFormatter(locator)
    ax.xaxis.set_major_formatter(formatter)
    ax.xaxis.get_offset_text().set_fontsize(fs)
    if align_zeros and ax_right is not None:
        (l0, l1), (r0, r1) = aligned_zero_limits(ax.get_ylim(), ax_right.get_ylim())
        ax.set_ylim(l0, l1)
        ax_right.set_ylim(r0, r1)
    if align_zeros:
        ax.axhline(0.0, color="0.5", linewidth=0.6, zorder=0)
    ax.grid(True, alpha=0.3)
    # compact legend above the axes: colours = points/polygons, styles = layers
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, linewidth=3, label=g) for g, c in colors.items()]
    if len(layer_style) > 1 or len(colors) == 1:
        handles += [
            Line2D([], [], color="0.25", linestyle=ls, marker=m, markersize=3.5, linewidth=1.2, label=name)
            for name, (ls, m, _) in layer_style.items()
        ]
    ncol = max(1, min(len(handles), int(width_px / (95 if compact else 130))))
    ax.legend(
        handles=handles,
        loc="lower left",
        bbox_to_anchor=(0.0, 1.01, 1.0, 0.1),
        ncol=ncol,
        fontsize=fs - 0.5,
        frameon=False,
        handlelength=1.6,
        columnspacing=0.9,
        borderaxespad=0.0,
        mode="expand" if ncol > 1 else None,
    )
    return ax, ax_right, lines


def _layout_pads(fig):
    pads = dict(w_pad=0.04, h_pad=0.04, wspace=0.0, hspace=0.0)
    engine = fig.get_layout_engine() if hasattr(fig, "get_layout_engine") else None
    if engine is not None and hasattr(engine, "set"):
        engine.set(**pads)
    else:  # matplotlib < 3.6
        fig.set_constrained_layout_pads(**pads)


class SeriesPlot:
    """A matplotlib figure in a Qt widget (``self.widget``) that draws a list of Series."""

    LEFT_TITLE = "Deformation"
    RIGHT_TITLE = "Water storage anomaly"
    RIGHT_TITLE_SHORT = "Storage anomaly"

    def __init__(self, parent=None):
        Figure, FigureCanvasQTAgg, mdates, matplotlib = load_matplotlib()
        self._mdates = mdates
        self._Figure = Figure
        self.figure = Figure(figsize=(6, 3.5), dpi=100, constrained_layout=True)
        _layout_pads(self.figure)
        plot = self

        class Canvas(FigureCanvasQTAgg):
            def resizeEvent(self, event):  # new size -> new layout, ticks, fonts
                super().resizeEvent(event)
                plot.draw(plot.series)

        self.widget = Canvas(self.figure)
        if parent is not None:
            self.widget.setParent(parent)
        self.ax_left = None
        self.ax_right = None
        self.lines = {}
        self.series = []
        self.align_zeros = False
        self.draw([])

    def draw(self, series):
        """Redraw the figure with ``series`` (list of :class:`core.timeseries.pixel_series.Series`)."""
        self.series = list(series)
        self.ax_left, self.ax_right, self.lines = draw_series(
            self.figure, self.series, self._mdates, align_zeros=self.align_zeros
        )
        self.widget.draw()

    def save_png(self, path, size_in=EXPORT_SIZE_IN, dpi=EXPORT_DPI):
        """Write the plot at a fixed size (``size_in`` inches at ``dpi``), whatever the dock's size."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        fig = self._Figure(figsize=size_in, dpi=dpi, constrained_layout=True)
        _layout_pads(fig)
        FigureCanvasAgg(fig)
        draw_series(fig, self.series, self._mdates, align_zeros=self.align_zeros, compact=False)
        fig.savefig(str(path), dpi=dpi)
        return str(path)
