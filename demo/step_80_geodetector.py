"""Demo step: Geodetector on the demo world's driver rasters (raster mode).

Target: ``demo.outputs['sbas_velocity']`` when the SBAS step produced it, else the world's
planted velocity (mm/yr). Factors: the world's ``factors/*.tif`` (coal-mining intensity is the
planted strongest driver), from ``demo.outputs['world']`` when an earlier step generated the
world, else generated here (deterministic). Runs the set-up of Huang et al. 2025: exact
natural breaks, 20 classes; -15 mm/yr threshold, samples 1:0.5) and all rows with 5 classes, and
logs whether the top-ranked factor is the planted one.
"""

import json

import pandas as pd


def _world(demo):
    from subsidence_toolkit.demo import world

    return world.for_demo(demo)


def run(demo):
    w = _world(demo)
    truth = w["truth"]["strongest_factor"]
    target = demo.outputs.get("sbas_velocity") or w["truth"]["velocity_truth"]
    factors = list(w["factors"].values())
    metrics = {"truth_strongest": truth}
    for tag, extra in (
        ("huang2025", {"CLASSES": 20, "SUBSIDENCE_THRESHOLD": -15, "SAMPLE_RATIO": "1:0.5", "SEED": 0}),
        ("all", {"CLASSES": 5}),
    ):
        out = {
            k: str(demo.out_dir / ("geodetector_%s_%s.csv" % (tag, k.lower().replace("output_", ""))))
            for k in ("OUTPUT_FACTOR", "OUTPUT_INTERACTION", "OUTPUT_RISK", "OUTPUT_RISK_TESTS", "OUTPUT_ECOLOGICAL")
        }
        params = {
            "TARGET_RASTER": target,
            "FACTOR_RASTERS": factors,
            "METHOD": 0,
            "OUTPUT_HTML": str(demo.out_dir / ("geodetector_%s.html" % tag)),
            **extra,
            **out,
        }
        if tag == "all":
            params["OUTPUT_STRATUM_MEAN"] = str(demo.out_dir / "geodetector_stratum_mean.tif")
        demo.run("subsidence:geodetector", params)
        fac = pd.read_csv(out["OUTPUT_FACTOR"]).sort_values("q", ascending=False)
        inter = pd.read_csv(out["OUTPUT_INTERACTION"]).sort_values("q_ab", ascending=False)
        top = str(fac.factor.iloc[0])
        demo.log("[%s] q ranking: %s" % (tag, ", ".join("%s %.3f" % (r.factor, r.q) for r in fac.itertuples())))
        demo.log(
            "[%s] N = %d; strongest pair %s x %s q = %.3f (%s)"
            % (
                tag,
                fac.n.iloc[0],
                inter.factor_a.iloc[0],
                inter.factor_b.iloc[0],
                inter.q_ab.iloc[0],
                inter.type.iloc[0],
            )
        )
        demo.log(
            "[%s] top-ranked factor %s %s the planted strongest driver %s"
            % (tag, top, "MATCHES" if top == truth else "does NOT match", truth)
        )
        metrics[tag] = {"top": top, "match": top == truth, "q_top": float(fac.q.iloc[0]), "n": int(fac.n.iloc[0])}
    demo.outputs["geodetector_report"] = str(demo.out_dir / "geodetector_huang2025.html")
    (demo.out_dir / "geodetector_metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics
