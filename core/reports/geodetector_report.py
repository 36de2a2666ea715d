"""HTML report of a Geodetector run (no QGIS; matplotlib optional).

Settings, a q bar chart with confidence intervals and an interaction heat map (when matplotlib
imports), then the tables: breaks shown compactly (first … last, count; every value in a
collapsible cell), p-values in scientific notation (``p < 1e-300`` when it underflowed to 0) and
missing values as "—" with a note saying why (e.g. no permutations run).
"""

import html

import numpy as np

from . import html_tools as ht

CI_HELP = (
    "Confidence interval of the population q (columns q_ci_low, q_ci_high). Under the model behind the "
    "Wang-Zhang-Fu test (Y normal with equal variance within strata), F = (N-L)/(L-1) q/(1-q) follows a "
    "noncentral F(L-1, N-L, lambda) with lambda = sum N_h (mu_h - mu)^2 / sigma^2, and the population q "
    "is lambda/(lambda+N). The interval holds the lambdas whose central range of F contains the observed "
    "F, mapped to q (Steiger 2004; as gdverse and the QGIS Geographical detector plugin). It is for the "
    "population q: for weak factors it can lie below the sample q, which is biased upward by about "
    "(L-1)/(N-1). q = 1 gives [1, 1]; an interval starting at 0 means no evidence of stratification."
)

P_COLUMNS = ("p", "p_wang", "p_anova", "p_wang_ab", "p_enhance")
SECTIONS = (
    ("Factor detector", "factor", "factor"),
    ("Interaction detector", "interaction", "interaction"),
    ("Ecological detector", "ecological", "ecological"),
    ("Risk detector: strata", "risk", None),
    ("Risk detector: Welch t-tests", "risk_tests", None),
    ("q versus classes", "curves", None),
)
MISSING_NOTES = {
    "interaction": "p_enhance is empty when no permutations were run (Permutations for the interaction p = 0); "
    "other empty cells: not defined for that pair (e.g. a single stratum).",
    "factor": "not defined (e.g. a factor with a single stratum has no F test).",
}


def factor_figure(fac, Figure):
    fig = Figure(figsize=(7, 0.38 * len(fac) + 1.3))
    ax = fig.subplots()
    names = [str(n) for n in fac.factor][::-1]
    q = fac.q.to_numpy(dtype=float)[::-1]
    y = np.arange(len(names), dtype=float)
    ax.barh(y, q, color="#4477aa", tick_label=names)
    if "q_ci_low" in fac:
        # the intervals drawn as lines (matplotlib's xerr= takes the first row of a 2 x 1 array for a scalar,
        # which numpy >= 1.25 deprecates, with a single factor)
        low = np.minimum(fac.q_ci_low.to_numpy(dtype=float)[::-1], q)
        high = np.maximum(fac.q_ci_high.to_numpy(dtype=float)[::-1], q)
        ok = np.isfinite(low) & np.isfinite(high)
        y, low, high = y[ok], low[ok], high[ok]
        ax.hlines(y, low, high, color="#222222", lw=1)
        ax.plot(np.r_[low, high], np.r_[y, y], ls="none", marker="|", ms=8, color="#222222")
        level = float(fac.ci_level.iloc[0]) if "ci_level" in fac else 0.95
        ax.set_xlabel("q (bars: %g %% confidence interval of the population q)" % (100 * level))
    else:
        ax.set_xlabel("q")
    ax.set_xlim(0, max(1e-9, min(1.0, float(np.nanmax(fac.q_ci_high if "q_ci_high" in fac else fac.q)) * 1.1)))
    ax.set_title("Factor detector")
    fig.tight_layout()
    return fig


def interaction_figure(factor, inter, Figure):
    names = list(factor.factor)
    m = np.full((len(names), len(names)), np.nan)
    for r in inter.itertuples():
        if r.factor_a in names and r.factor_b in names:
            i, j = names.index(r.factor_a), names.index(r.factor_b)
            m[i, j] = m[j, i] = r.q_ab
    for i, r in enumerate(factor.itertuples()):
        m[i, i] = r.q
    size = min(9.0, 2.2 + 0.6 * len(names))
    fig = Figure(figsize=(size + 1.2, size))
    ax = fig.subplots()
    im = ax.imshow(m, cmap="viridis", vmin=0, vmax=max(1e-9, float(np.nanmax(m))))
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=90)
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names)
    if len(names) <= 14:
        for i in range(len(names)):
            for j in range(len(names)):
                if np.isfinite(m[i, j]):
                    ax.text(j, i, "%.2f" % m[i, j], ha="center", va="center", fontsize=7, color="w")
    fig.colorbar(im, ax=ax, label="q (diagonal) / q(A\u2229B)")
    ax.set_title("Interaction detector")
    fig.tight_layout()
    return fig


def _formats():
    return {"breaks": ht.fmt_breaks}


def html_report(results, info_lines=(), title="Geodetector", plots=True):
    """The page (str) for the dict of DataFrames returned by :func:`core.stats.geodetector.run_geodetector`."""
    e = html.escape
    parts = ["<h1>%s</h1>" % e(title)]
    parts.append("<ul>%s</ul>" % "".join("<li>%s</li>" % e(str(s)) for s in info_lines))
    fac = results["factor"].sort_values("q", ascending=False)
    inter = results.get("interaction")
    Figure = ht.matplotlib_figure() if plots else None
    if Figure is not None and len(fac):
        try:
            parts.append(ht.figure_png(factor_figure(fac, Figure)))
            if inter is not None and len(inter) and "q_ab" in inter:
                parts.append(ht.figure_png(interaction_figure(results["factor"], inter, Figure)))
        except Exception as ex:  # noqa: BLE001 - a plot failure must not lose the tables
            parts.append("<p class='warn'>plot failed: %s</p>" % e(str(ex)))
    elif plots:
        parts.append("<p>(matplotlib is not available: tables only)</p>")
    for title_, key, _ in SECTIONS:
        df = results.get(key)
        if df is None or not len(df) or not len(df.columns):
            continue
        if key == "factor":  # what matters first: q, its interval and p; the rest after
            first = [
                c
                for c in (
                    "factor",
                    "q",
                    "q_ci_low",
                    "q_ci_high",
                    "p_wang",
                    "p_anova",
                    "q_adj",
                    "q_null",
                    "n",
                    "strata",
                    "method",
                    "classes",
                    "breaks",
                )
                if c in fac
            ]
            df = fac[first + [c for c in fac.columns if c not in first]]
        if key == "interaction" and "q_ab" in df:
            df = df.sort_values("q_ab", ascending=False)

        def row_class(r, key=key):
            if key == "factor" and "p_wang" in r and not ht.is_missing(r["p_wang"]):
                return "sig" if float(r["p_wang"]) < 0.05 else ""
            if "significant" in r and not ht.is_missing(r["significant"]):
                return "sig" if bool(r["significant"]) else ""
            return ""

        parts.append("<h2>%s</h2>" % e(title_))
        if key == "factor":
            parts.append(
                "<p class='note'>Green rows: p_wang &lt; 0.05. <b>Confidence interval of q</b> (q_ci_low, "
                "q_ci_high): %s</p>" % e(CI_HELP)
            )
        parts.append(
            ht.table(
                df,
                formats=_formats(),
                p_columns=P_COLUMNS,
                text_columns=("factor", "factor_a", "factor_b", "type", "range"),
                row_class=row_class,
                missing_note=MISSING_NOTES.get(key),
            )
        )
    return ht.page(title, parts)


def write_html_report(path, results, info_lines=(), **kwargs):
    """Write :func:`html_report` to ``path`` atomically (temporary file, then rename)."""
    return ht.write_text_atomic(path, html_report(results, info_lines, **kwargs))
