"""Demo step: generate the shared synthetic world (three landscapes, planted truth) -- see demo/world.py."""

from subsidence_toolkit.demo import world


def run(demo):
    w = world.for_demo(demo)
    t = w["truth"]
    demo.log(
        "planted: lag (months) %s; strongest Geodetector factor %s; GRACE month %s missing, %s centred "
        "in the previous month"
        % (t["planted_lag_months"], t["strongest_factor"], t["grace_missing_month"], t["grace_shifted_month"])
    )
    return {"interferograms": len(w["interferograms"]), "epochs": len(t["epochs"]), "months": len(t["months"])}
