"""Matplotlib plot of time series for the dock (Qt canvas, no pyplot global state).

Twin axes follow the rule of :mod:`core.timeseries.pixel_series`: deformation series on
the left y axis, water-storage series (GWSA/TWSA/groundwater ...) on the right
one, which exists only when both families are plotted.
"""
MATPLOTLIB_MISSING = (
    "matplotlib is not available in this QGIS Python ({error}), so series cannot be plotted. "
    "Clicked series are still collected and can be exported as CSV. Install it with the package "
    "manager of your QGIS (e.g. 'apt install python3-matplotlib', or the OSGeo4W / pip 'matplotlib' package)."
)


def load_matplotlib():
    """Import the matplotlib pieces the plot needs; raises ImportError when missing."""
    import matplotlib
    import matplotlib.dates as mdates
    from matplotlib.backends.backend_qt5agg import FigureCanvasQTAgg
    from matplotlib.figure import Figure

    return Figure, FigureCanvasQTAgg, mdates, matplotlib


def _axis_label(title, series):
    units = sorted({s.units for s in series if s.units})
    return "%s (%s)" % (title, ", ".join(units)) if units else title


class SeriesPlot:
    """A matplotlib figure in a Qt widget (``self.widget``) that draws a list of Series."""

    LEFT_TITLE = "Deformation"
    RIGHT_TITLE = "Water storage anomaly"

    def __init__(self, parent=None):
        Figure, FigureCanvasQTAgg, mdates, matplotlib = load_matplotlib()
        self._mdates = mdates
        self._cycle = [c["color"] for c in matplotlib.rcParams["axes.prop_cycle"]]
        self.figure = Figure(figsize=(6, 3.5), dpi=100)
        self.widget = FigureCanvasQTAgg(self.figure)
        if parent is not None:
            self.widget.setParent(parent)
        self.ax_left = None
        self.ax_right = None
        self.lines = {}
        self.draw([])

    def draw(self, series):
        """Redraw the figure with ``series`` (list of :class:`core.timeseries.pixel_series.Series`)."""
        fig = self.figure
        fig.clear()
        self.lines = {}
        left = [s for s in series if s.axis == "left"]
        right = [s for s in series if s.axis == "right"]
        if not left:  # storage only: use the left axis
            left, right = right, []
            left_title = self.RIGHT_TITLE
        else:
            left_title = self.LEFT_TITLE
        ax = fig.add_subplot(111)
        self.ax_left = ax
        self.ax_right = ax.twinx() if right else None
        cycle = self._cycle
        handles = []
        for k, s in enumerate(series):
            on_right = self.ax_right is not None and s in right
            target = self.ax_right if on_right else ax
            (line,) = target.plot(
                s.dates, s.values, linestyle="--" if on_right else "-", marker="s" if on_right else "o",
                markersize=3.5, linewidth=1.2, color=cycle[k % len(cycle)], label=s.label,
            )
            self.lines[s.label] = line
            handles.append(line)
        if series:
            ax.set_ylabel(_axis_label(left_title, left))
            if self.ax_right is not None:
                self.ax_right.set_ylabel(_axis_label(self.RIGHT_TITLE, right))
            # below the axes, so that it never hides the data
            ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize="small",
                      ncol=2 if len(handles) > 4 else 1, frameon=False)
            ax.xaxis.set_major_formatter(self._mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
        else:
            ax.text(0.5, 0.5, "Click the map to plot the series of a pixel", ha="center", va="center",
                    transform=ax.transAxes, color="0.4")
            ax.set_xticks([])
            ax.set_yticks([])
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        self.widget.draw()

    def save_png(self, path, dpi=150):
        self.figure.savefig(str(path), dpi=dpi, bbox_inches="tight")
        return str(path)
