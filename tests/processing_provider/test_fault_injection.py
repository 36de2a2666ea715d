"""Fault injection: every algorithm × every way a run can go wrong (issue "never lose a user's data").

One row of ``ALGORITHMS`` per algorithm: its minimal valid parameters built from the small fixtures
below, its output parameters (with the file extension to write) and the raster input to damage. Each
case checks that the run fails with a one-line message naming the problem, leaves no new file
(temporary or final) behind, and leaves every input and previous output byte-identical.

Cases: output = input (every output parameter), truncated and 0-byte raster input, read-only output
folder (a read-only bind mount: root only), a full disk (a tiny tmpfs: root only), SIGTERM mid-run
through ``qgis_process.bin`` (two algorithms), and in process a SIGTERM whose exception Python
swallows (raised inside ``__del__``), with and without the core stopping at its cancel check.
"""

import datetime as dt
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal
from synthetic import sentinel1_dates, smooth_stack, write_stack

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
MONTHS = [dt.date(2004 + (m // 12), m % 12 + 1, 15) for m in range(24)]


# ------------------------------------------------------------------------------------------ fixtures
def _ifg_stack(d):
    d.mkdir()
    dates = sentinel1_dates(start=dt.date(2020, 1, 3), n=6, gaps=())
    rng = np.random.default_rng(1)
    files = []
    for i, a in enumerate(dates):
        for b in dates[i + 1 : i + 3]:
            tag = "%s_%s" % (a.strftime("%Y%m%d"), b.strftime("%Y%m%d"))
            files.append(write_stack(d / ("%s.geo.unw.tif" % tag), rng.normal(0, 1, (10, 12))))
    return files


def _build(d):
    from grace_inputs import build_inputs

    fx = {"dir": d}
    fx["ts"] = write_stack(d / "ts.tif", smooth_stack(MONTHS, ny=8, nx=9), dates=MONTHS)
    fx["vel"] = write_stack(d / "vel.tif", np.linspace(-120, 30, 72).reshape(8, 9))
    fx["factor"] = write_stack(d / "factor.tif", np.repeat(np.arange(8.0)[:, None], 9, axis=1))
    fx["vel_dsc"] = write_stack(d / "vel_dsc.tif", np.linspace(-100, 20, 72).reshape(8, 9)[:, ::-1].copy())
    field = np.add.outer(np.arange(8.0), np.arange(12.0))  # two overlapping frames of one field, offset +3 mm
    fx["frame_a"] = write_stack(d / "frame_a.tif", field[:, :8])
    fx["frame_b"] = write_stack(d / "frame_b.tif", field[:, 4:] + 3.0, origin=(500000.0 + 4 * 30.0, 4000000.0))
    fx["ifgs"] = _ifg_stack(d / "ifg")
    (d / "grace").mkdir()
    g = build_inputs(d / "grace")
    fx.update(grace=g["grace"], sm=g["sm"])
    # a monthly TWSA on the FLDAS grid (EPSG:4326) for the water balance
    arr = np.random.default_rng(2).normal(0, 20, (24, 20, 20))
    fx["twsa"] = write_stack(d / "twsa.tif", arr, dates=MONTHS, epsg=4326, origin=(110.0, 37.0), pixel=0.1)
    fx["area"] = str(d / "area.geojson")
    Path(fx["area"]).write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {"name": "a"},
                        "geometry": {
                            "type": "Polygon",
                            "coordinates": [
                                [[110.2, 35.2], [111.5, 35.2], [111.5, 36.6], [110.2, 36.6], [110.2, 35.2]]
                            ],
                        },
                    }
                ],
            }
        )
    )
    x0, y0 = 500000.0 + 15, 4000000.0 - 15
    rows = ["id,date,value,x,y"] + [
        "p%d,%s,%.2f,%.1f,%.1f" % (k, m.isoformat(), k + i * 0.5, x0 + 30 * k, y0 - 30 * k)
        for k in range(3)
        for i, m in enumerate(MONTHS)
    ]
    fx["measurements"] = str(d / "measurements.csv")
    Path(fx["measurements"]).write_text("\n".join(rows) + "\n")
    lag = ["date,gwsa,defo"] + [
        "%s,%.3f,%.3f" % (m.isoformat(), np.sin(i / 2.0), np.sin((i - 1) / 2.0)) for i, m in enumerate(MONTHS)
    ]
    fx["lagtable"] = str(d / "lag.csv")
    Path(fx["lagtable"]).write_text("\n".join(lag) + "\n")
    fx["baselines"] = str(d / "baselines.csv")  # per-date perpendicular baselines of the ts dates
    bperp = np.random.default_rng(3).normal(0, 60, len(MONTHS))
    Path(fx["baselines"]).write_text("date,bperp\n" + "".join("%s,%.2f\n" % (m, b) for m, b in zip(MONTHS, bperp)))
    return fx


# One row per algorithm: (id, parameters(fx), {output: extension}, the raster input parameter to damage,
# the input files an output may be pointed at).
ALGORITHMS = [
    ("resampletimeseries", lambda fx: {"INPUT": fx["ts"]}, {"OUTPUT": ".tif"}, "INPUT"),
    (
        "sbasinversion",
        lambda fx: {"INTERFEROGRAMS": fx["ifgs"], "LOOP_CLOSURE": 0},  # random phase: no loops
        {"OUTPUT_TIMESERIES": ".tif", "OUTPUT_VELOCITY": ".tif", "OUTPUT_QUALITY": ".tif", "OUTPUT_NETWORK": ".gpkg"},
        "INTERFEROGRAMS",
    ),
    (
        "gracedownscaling",
        lambda fx: {"GRACE": fx["grace"], "MODEL_FILES": fx["sm"]},
        {"OUTPUT": ".tif", "OUTPUT_TABLE": ".csv"},
        None,
    ),
    (
        "groundwateranomaly",
        lambda fx: {"TWSA": fx["twsa"], "TWSA_UNITS": "mm", "COMPONENT_FILES": fx["sm"], "MASK": fx["area"]},
        {"OUTPUT": ".tif", "OUTPUT_TABLE": ".csv"},
        "TWSA",
    ),
    (
        "sampledeformationclasses",
        lambda fx: {"VELOCITY": fx["vel"], "TIME_SERIES": [fx["ts"]], "POINTS_PER_CLASS": 3},
        {"OUTPUT_POINTS": ".gpkg", "OUTPUT_TABLE": ".csv", "OUTPUT_REPORT": ".csv"},
        "VELOCITY",
    ),
    (
        "validatetimeseries",
        lambda fx: {
            "MEASUREMENTS": fx["measurements"],
            "ID_FIELD": "id",
            "DATE_FIELD": "date",
            "VALUE_FIELD": "value",
            "X_FIELD": "x",
            "Y_FIELD": "y",
            "MEASUREMENTS_CRS": "EPSG:32649",
            "TIME_SERIES": fx["ts"],
        },
        {"OUTPUT": ".csv", "OUTPUT_SUMMARY": ".csv"},
        "TIME_SERIES",
    ),
    (
        "laggedcorrelation",
        lambda fx: {
            "INPUT": fx["lagtable"],
            "DATE_FIELD": "date",
            "X_FIELD": "gwsa",
            "Y_FIELD": "defo",
            "MAX_LAG": 2,
            "SERIES": 0,
        },
        {"OUTPUT": ".csv", "OUTPUT_HTML": ".html"},
        None,
    ),
    (
        "geodetector",
        lambda fx: {"TARGET_RASTER": fx["vel"], "FACTOR_RASTERS": [fx["factor"]], "CLASSES": 3},
        {
            "OUTPUT_FACTOR": ".csv",
            "OUTPUT_INTERACTION": ".csv",
            "OUTPUT_RISK": ".csv",
            "OUTPUT_RISK_TESTS": ".csv",
            "OUTPUT_ECOLOGICAL": ".csv",
            "OUTPUT_HTML": ".html",
            "OUTPUT_STRATUM_MEAN": ".tif",
        },
        "TARGET_RASTER",
    ),
    (
        "geodetectorraster",
        lambda fx: {"TARGET_RASTER": fx["vel"], "FACTOR_RASTERS": [fx["factor"]], "CLASSES": 3},
        {"OUTPUT_FACTOR": ".csv", "OUTPUT_RISK": ".csv", "OUTPUT_HTML": ".html", "OUTPUT_STRATUM_MEAN": ".tif"},
        "TARGET_RASTER",
    ),
    (
        "geodetectortable",
        lambda fx: {"INPUT": fx["measurements"], "TARGET_FIELD": "value", "FACTOR_FIELDS": ["id"]},
        {"OUTPUT_FACTOR": ".csv", "OUTPUT_RISK": ".csv", "OUTPUT_HTML": ".html"},
        None,
    ),
    ("workflowreport", lambda fx: {"VELOCITY": fx["vel"], "GWSA": fx["twsa"]}, {"OUTPUT_HTML": ".html"}, "VELOCITY"),
    (
        "maskbyquality",
        lambda fx: {"QUALITY": fx["sbas_q"], "VELOCITY": fx["sbas_vel"], "TIMESERIES": fx["sbas_ts"]},
        {"OUTPUT_VELOCITY": ".tif", "OUTPUT_TIMESERIES": ".tif", "OUTPUT_MASK": ".tif", "OUTPUT_TABLE": ".csv"},
        "QUALITY",
    ),
    ("projectlos", lambda fx: {"INPUT": fx["ts"], "INCIDENCE_ANGLE": 40.0}, {"OUTPUT": ".tif"}, "INPUT"),
    (
        "decomposelos",
        lambda fx: {"INPUTS": [fx["vel"], fx["vel_dsc"]], "HEADINGS": "-10, 190", "INCIDENCE_ANGLES": "35, 40"},
        {"OUTPUT_VERTICAL": ".tif", "OUTPUT_EAST": ".tif", "OUTPUT_QUALITY": ".tif"},
        "INPUTS",
    ),
    (
        "demerror",
        lambda fx: {"INPUT": fx["ts"], "BASELINES": fx["baselines"]},
        {"OUTPUT_TIMESERIES": ".tif", "OUTPUT_DEM_ERROR": ".tif", "OUTPUT_TABLE": ".csv"},
        "INPUT",
    ),
    (
        "mosaicframes",
        lambda fx: {"INPUTS": [fx["frame_a"], fx["frame_b"]], "REFERENCE_FRAME": 0},
        {"OUTPUT": ".tif", "OUTPUT_OFFSETS": ".csv"},
        "INPUTS",
    ),
]
ROWS = {row[0]: row for row in ALGORITHMS}


@pytest.fixture(scope="module")
def fx(tmp_path_factory, qgis_app):
    fx = _build(tmp_path_factory.mktemp("faults"))
    import processing  # an SBAS run's outputs, for the algorithms that take them

    sbas = {k: str(fx["dir"] / ("sbas_%s.tif" % k)) for k in ("ts", "vel", "q")}
    processing.run(
        "subsidence:sbasinversion",
        {
            "INTERFEROGRAMS": fx["ifgs"],
            "LOOP_CLOSURE": 0,
            "OUTPUT_TIMESERIES": sbas["ts"],
            "OUTPUT_VELOCITY": sbas["vel"],
            "OUTPUT_QUALITY": sbas["q"],
        },
    )
    fx.update(("sbas_" + k, v) for k, v in sbas.items())
    return fx


def _files(value):
    from subsidence_toolkit.core.io.staging import source_files

    out = []
    for v in value if isinstance(value, list) else [value]:
        if isinstance(v, str):
            out += source_files(v)
    return out


def input_files(fx, alg):
    params = ROWS[alg][1](fx)
    files = []
    for v in params.values():
        files += [f for f in _files(v) if f not in files]
    return params, files


def snapshot(*folders):
    """{path: sha1} of every file under the folders (hidden staging files included). Left out: the
    ``.aux.xml`` statistics GDAL saves beside an input raster when QGIS loads it as a layer (QGIS's
    raster provider, for any algorithm, not ours; the input itself stays byte-identical)."""
    out = {}
    for folder in folders:
        for root, _, names in os.walk(folder):
            for n in names:
                p = os.path.join(root, n)
                if n.endswith(".aux.xml") and os.path.exists(p[:-8]) and not n.startswith(".") and "out_" not in n:
                    continue
                with open(p, "rb") as f:
                    out[p] = hashlib.sha1(f.read()).hexdigest()
    return out


def outputs_in(folder, alg, tag="out"):
    return {name: str(Path(folder) / ("%s_%s%s" % (tag, name.lower(), ext))) for name, ext in ROWS[alg][2].items()}


def expect_failure(run_alg, alg, params, pattern, watched):
    """Run, expect a one-line QgsProcessingException matching ``pattern``; ``watched`` folders unchanged."""
    from qgis.core import QgsProcessingException

    before = snapshot(*watched)
    printed = []  # what Python could only print ("Exception ignored in ...": a traceback on the user's console)
    hook, sys.unraisablehook = sys.unraisablehook, lambda u: printed.append("%r in %r" % (u.exc_value, u.object))
    try:
        with pytest.raises(QgsProcessingException) as err:
            run_alg(alg, params)
    finally:
        sys.unraisablehook = hook
    assert not printed, printed
    lines = str(err.value.args[0] if err.value.args else err.value).strip().splitlines()
    if lines[0] == "Unable to execute algorithm":  # processing.run's own prefix for a rejected parameter
        lines = lines[1:]
    message = "\n".join(lines)
    assert len(lines) == 1 and "Traceback" not in message, message
    assert re.search(pattern, message, re.I), message
    after = snapshot(*watched)
    assert after == before, "files changed: %s" % sorted(set(after.items()) ^ set(before.items()))
    return message


def previous_outputs(folder, alg):
    """Put a 'previous run' file at every output path (they must survive a failed run byte for byte)."""
    outs = outputs_in(folder, alg)
    os.makedirs(folder, exist_ok=True)
    for p in outs.values():
        Path(p).write_bytes(b"previous output of an earlier run\n")
    return outs


# ------------------------------------------------------------------------------------------ the matrix
@pytest.mark.parametrize("alg", list(ROWS))
def test_valid_run_succeeds_and_leaves_no_staging_file(run_alg, fx, alg, tmp_path):
    """The row's parameters are valid: the run writes every output and nothing else."""
    params, _ = input_files(fx, alg)
    outs = outputs_in(tmp_path, alg)
    res = run_alg(alg, dict(params, **outs))
    for name, path in outs.items():
        assert os.path.getsize(path) > 0, name
        assert str(res[name]).split("|")[0] == path, (name, res[name])
    # a CSV table comes with its .csvt (column types) side-car, nothing else is written
    expected = [os.path.basename(p) for p in outs.values()]
    expected += [n + "t" for n in expected if n.endswith(".csv")]
    assert sorted(os.listdir(tmp_path)) == sorted(expected)


def _collision_cases():
    for alg, _, outs, _ in ALGORITHMS:
        for k, name in enumerate(outs):
            yield alg, name, k


@pytest.mark.parametrize("alg,output,k", list(_collision_cases()))
def test_output_equal_to_an_input_is_refused(run_alg, fx, alg, output, k, tmp_path):
    params, files = input_files(fx, alg)
    target = files[k % len(files)]
    outs = previous_outputs(tmp_path, alg)
    outs[output] = target
    expect_failure(
        run_alg,
        alg,
        dict(params, **outs),
        r"%s: the output .* would overwrite the input" % output,
        [fx["dir"], tmp_path],
    )


@pytest.mark.parametrize("alg", [a for a, _, _, damaged in ALGORITHMS if damaged])
@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_damaged_raster_input_is_named(run_alg, fx, alg, damage, tmp_path):
    params, _ = input_files(fx, alg)
    pname = ROWS[alg][3]
    value = params[pname]
    original = value[0] if isinstance(value, list) else value
    broken = tmp_path / "in" / os.path.basename(original)
    broken.parent.mkdir()
    data = Path(original).read_bytes()
    broken.write_bytes(data[: len(data) * 2 // 3] if damage == "truncated" else b"")
    params[pname] = [str(broken)] + value[1:] if isinstance(value, list) else str(broken)
    outs = previous_outputs(tmp_path / "out", alg)
    pattern = (
        r"%s: .*%s.*(damaged|truncated|cannot be read|not a readable)" % (pname, broken.name)
        if damage == "truncated"
        else r"%s: .*%s is an empty \(0-byte\) file" % (pname, broken.name)
    )
    expect_failure(run_alg, alg, dict(params, **outs), pattern, [fx["dir"], tmp_path])


@pytest.fixture
def mounted(tmp_path):
    """mount(options) -> a fresh mount point under tmp_path; unmounted after the test."""
    if not IS_ROOT:
        pytest.skip("mounts need root")
    points = []

    def mount(*args):
        p = tmp_path / ("m%d" % len(points))
        p.mkdir()
        r = subprocess.run(["mount"] + list(args) + [str(p)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip("cannot mount here: %s" % r.stderr.strip())
        points.append(p)
        return p

    yield mount
    for p in reversed(points):
        subprocess.run(["umount", "-l", str(p)], capture_output=True)


@pytest.mark.parametrize("alg", list(ROWS))
def test_read_only_output_folder(run_alg, fx, alg, tmp_path, mounted):
    src = tmp_path / "src"
    outs = previous_outputs(src, alg)
    ro = mounted("--bind", str(src))
    r = subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("cannot remount read-only: %s" % r.stderr.strip())
    params, _ = input_files(fx, alg)
    outs = {k: str(ro / os.path.basename(v)) for k, v in outs.items()}
    expect_failure(run_alg, alg, dict(params, **outs), r"read-only", [fx["dir"], src])


def _fill(disk, leave=0):
    """Fill the file system of ``disk`` up to ``leave`` free bytes (approximately: whole blocks)."""
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
    for chunk in (4096, 256, 1):
        try:
            while os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize > leave + chunk:
                os.write(fd, b"\0" * chunk)
            while not leave:
                os.write(fd, b"\0" * chunk)
        except OSError:
            pass
    os.close(fd)


@pytest.mark.parametrize("alg", list(ROWS))
def test_full_disk(run_alg, fx, alg, mounted):
    disk = mounted("-t", "tmpfs", "-o", "size=96k", "tmpfs")
    outs = previous_outputs(disk, alg)
    _fill(disk)
    params, _ = input_files(fx, alg)
    expect_failure(
        run_alg,
        alg,
        dict(params, **outs),
        r"disk is full|is the disk full|no space|could not be written",
        [fx["dir"], disk],
    )


@pytest.mark.parametrize("alg", list(ROWS))
def test_disk_filling_up_mid_run(run_alg, fx, alg, mounted):
    """A few kB left: the run either writes complete outputs or fails cleanly and leaves nothing new."""
    from qgis.core import QgsProcessingException

    disk = mounted("-t", "tmpfs", "-o", "size=256k", "tmpfs")
    outs = previous_outputs(disk, alg)
    _fill(disk, leave=12 * 1024)
    before = snapshot(fx["dir"], disk)
    params, _ = input_files(fx, alg)
    try:
        res = run_alg(alg, dict(params, **outs))
    except QgsProcessingException as e:
        lines = str(e.args[0] if e.args else e).strip().splitlines()
        assert len(lines) == 1 and re.search(r"disk is full|is the disk full", lines[0]), lines
        assert snapshot(fx["dir"], disk) == before
        return
    for name, path in outs.items():  # success: every output complete
        assert str(res[name]).split("|")[0] == path
        if path.endswith(".tif"):
            assert gdal.Open(path).ReadAsArray() is not None
        elif not path.endswith(".html"):
            ds = gdal.OpenEx(path, gdal.OF_VECTOR)
            assert ds.GetLayer(0).GetFeatureCount() > 0, name
            ds = None
    assert not [n for n in os.listdir(disk) if "partial" in n]


# ------------------------------------------------------------------------------------------ SIGTERM
@pytest.fixture(scope="module")
def qp(tmp_path_factory):
    from subsidence_toolkit.demo.headless import QgisProcess, find_qgis_process

    if find_qgis_process() is None:
        pytest.skip("qgis_process.bin not installed")
    return QgisProcess(tmp_path_factory.mktemp("qp_faults"))


@pytest.mark.parametrize("alg", ["resampletimeseries", "gracedownscaling"])
def test_sigterm_mid_run_leaves_nothing(qp, fx, alg, tmp_path):
    params, _ = input_files(fx, alg)
    if alg == "resampletimeseries":  # big enough to be killed while it writes
        dates = [dt.date(2000, 1, 1) + dt.timedelta(days=12 * i) for i in range(60)]
        params["INPUT"] = write_stack(
            tmp_path / "big.tif", np.random.default_rng(0).normal(0, 1, (60, 200, 200)), dates=dates
        )
        params.update(STEP=1, STEP_DAYS=3, MEMORY_LIMIT_MB=1)
    else:
        params["MEMORY_LIMIT_MB"] = 0.05
    outs = previous_outputs(tmp_path / "out", alg)
    before = snapshot(fx["dir"], tmp_path)
    proc = subprocess.Popen(
        [qp.exe, "run", "subsidence:" + alg, "--"] + qp.arguments(dict(params, **outs)),
        env=qp.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    seen = b""
    deadline = time.time() + 120
    while time.time() < deadline and b"10..." not in seen:  # progress "0...10...": terminate at 10 %
        c = proc.stdout.read(1)
        if not c:
            break
        seen += c
    staged = [n for n in os.listdir(tmp_path / "out") if "partial" in n]
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=120)
    log = (seen + rest).decode(errors="replace")
    assert proc.returncode == -signal.SIGTERM, log  # cleaned up, then died of the signal (as without us)
    assert "Interrupted by SIGTERM: no output was written" in log, log
    assert staged, "the run was not writing yet: %s" % seen.decode(errors="replace")
    after = snapshot(fx["dir"], tmp_path)
    assert after == before, "files changed after SIGTERM (staged at kill time: %s): %s" % (
        staged,
        sorted(set(after.items()) ^ set(before.items())),
    )


def test_kill_9_leftovers_go_with_the_next_run(qp, fx, tmp_path):
    """kill -9 (what the out-of-memory killer sends) leaves hidden staged files: the next run into the same
    folder removes them (the killed process is gone and its marker's lock free) and says so."""
    params, _ = input_files(fx, "resampletimeseries")
    dates = [dt.date(2000, 1, 1) + dt.timedelta(days=12 * i) for i in range(60)]
    big = write_stack(tmp_path / "big.tif", np.random.default_rng(0).normal(0, 1, (60, 200, 200)), dates=dates)
    outs = previous_outputs(tmp_path / "out", "resampletimeseries")
    before = snapshot(tmp_path / "out")
    proc = subprocess.Popen(
        [qp.exe, "run", "subsidence:resampletimeseries", "--"]
        + qp.arguments(dict(params, INPUT=big, STEP=1, STEP_DAYS=3, MEMORY_LIMIT_MB=1, **outs)),
        env=qp.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    seen = b""
    deadline = time.time() + 120
    while time.time() < deadline and b"10..." not in seen:
        c = proc.stdout.read(1)
        if not c:
            break
        seen += c
    proc.kill()
    proc.communicate(timeout=60)
    left = sorted(set(snapshot(tmp_path / "out")) - set(before))
    assert any("partial" in p for p in left) and any(p.endswith(".run") for p in left), left
    assert all(os.path.basename(p).startswith(".") for p in left), left  # hidden; the previous output untouched
    r = subprocess.run(
        [qp.exe, "run", "subsidence:resampletimeseries", "--"] + qp.arguments(dict(params, **outs)),
        env=qp.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "that a killed earlier run left in" in r.stdout + r.stderr, r.stdout + r.stderr
    assert sorted(os.listdir(tmp_path / "out")) == sorted(os.path.basename(p) for p in outs.values())


# Started in qgis_process before QGIS loads the plugin (PYQGIS_STARTUP): kill -9 the process just before
# the staging module's STEP-th rename, i.e. while the run moves its outputs into place.
_DIE_AT_RENAME = """
import os, signal, sys
def _dying(real, calls=[0]):
    def replace(*args):
        if sys._getframe(1).f_globals.get("__name__", "").endswith("core.io.staging"):
            calls[0] += 1
            if calls[0] == %d:
                os.kill(os.getpid(), signal.SIGKILL)
        return real(*args)
    replace.dying = True
    return replace
if not getattr(os.replace, "dying", False):  # (QGIS may run the start-up file more than once)
    os.replace = _dying(os.replace)
"""


def test_kill_9_while_outputs_move_into_place_is_undone_by_the_next_run(qp, fx, tmp_path):
    """kill -9 after the run set its first previous output aside and before it moved the new one in (the
    folder then lacks that output): the next run into the folder puts the previous outputs back byte for
    byte, removes what the killed run left, and says so."""
    params, _ = input_files(fx, "gracedownscaling")
    outs = previous_outputs(tmp_path / "out", "gracedownscaling")
    before = snapshot(tmp_path / "out")
    startup = tmp_path / "die_at_rename.py"
    startup.write_text(_DIE_AT_RENAME % 2)
    r = subprocess.run(
        [qp.exe, "run", "subsidence:gracedownscaling", "--"] + qp.arguments(dict(params, **outs)),
        env=dict(qp.env, PYQGIS_STARTUP=str(startup)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == -signal.SIGKILL, r.stdout + r.stderr
    visible = sorted(n for n in os.listdir(tmp_path / "out") if not n.startswith("."))
    assert len(visible) == len(outs) - 1, visible  # one previous output is hidden away, the new one not in
    other = str(tmp_path / "out" / "other.tif")
    r = subprocess.run(
        [qp.exe, "run", "subsidence:resampletimeseries", "--"]
        + qp.arguments(dict(input_files(fx, "resampletimeseries")[0], OUTPUT=other)),
        env=qp.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "put back the previous %s" % outs["OUTPUT"] in r.stdout + r.stderr, r.stdout + r.stderr
    after = snapshot(tmp_path / "out")
    del after[other]
    assert after == before  # every previous output as it was, and nothing hidden left


# In process: a signal whose exception Python swallows. The handler raises where Python happens to be;
# inside a weakref callback, a __del__ or a garbage-collector callback the exception is only printed
# ("Exception ignored in ...") and the run went on to commit its outputs and report success (seen in CI:
# gracedownscaling on QGIS 3.40 finished "100 - done" after SIGTERM and exited 0).
def _toy_algorithm(after_write):
    from qgis.core import QgsProcessingParameterRasterDestination

    from subsidence_toolkit.processing_provider.base import SubsidenceAlgorithm

    class Toy(SubsidenceAlgorithm):
        NAME = "toy"
        DISPLAY_NAME = "Toy"

        def initAlgorithm(self, config=None):
            self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Output"))

        def processAlgorithm(self, parameters, context, feedback):
            path = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
            write_stack(path, np.ones((3, 4)))
            after_write(feedback)
            return {"OUTPUT": path}

    return Toy().create()


class _SignalOnCollect:
    """Sends SIGTERM to this process from ``__del__``: the handler's exception is swallowed there."""

    def __del__(self):
        signal.raise_signal(signal.SIGTERM)


def _run_toy(tmp_path, after_write, monkeypatch):
    """(ok, signals handed on, feedback, files left in the output folder) of one run of the toy."""
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback

    from subsidence_toolkit.core.io.tasks import SIGNAL_HANDLERS_MAY_RAISE
    from subsidence_toolkit.processing_provider.transaction import Interrupted

    class Feedback(QgsProcessingFeedback):
        errors = []

        def reportError(self, text, fatal=False):  # noqa: N802
            self.errors.append(text)

    received, swallowed = [], []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: swallowed.append(u.exc_type))
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        feedback = Feedback()
        (tmp_path / "out").mkdir()
        out = tmp_path / "out" / "result.tif"
        results, ok = _toy_algorithm(after_write).run({"OUTPUT": str(out)}, QgsProcessingContext(), feedback)
    finally:
        signal.signal(signal.SIGTERM, previous)
    # the case under test: Python swallowed the handler's exception (from Python 3.12 on the handler only cancels)
    assert swallowed == ([Interrupted] if SIGNAL_HANDLERS_MAY_RAISE else [])
    return ok, received, feedback, sorted(os.listdir(tmp_path / "out"))


def test_swallowed_sigterm_after_the_write_commits_nothing(qgis_app, tmp_path, monkeypatch):
    ok, received, feedback, left = _run_toy(tmp_path, lambda feedback: _SignalOnCollect(), monkeypatch)
    assert not ok
    assert left == []  # neither the output nor its staging file
    assert feedback.isCanceled()  # the core's cancel checks see it too
    assert received == [signal.SIGTERM]  # handed on to the handler from before the run, once
    assert any("Interrupted by SIGTERM" in e for e in feedback.errors), feedback.errors


def test_swallowed_sigterm_reported_as_the_signal_not_a_cancel(qgis_app, tmp_path, monkeypatch):
    from subsidence_toolkit.core.io.errors import Cancelled

    def core_keeps_going(feedback):
        _SignalOnCollect()
        if feedback.isCanceled():  # what the core does at its next check
            raise Cancelled("cancelled")

    ok, received, feedback, left = _run_toy(tmp_path, core_keeps_going, monkeypatch)
    assert not ok and left == [] and received == [signal.SIGTERM]
    assert any("Interrupted by SIGTERM" in e for e in feedback.errors), feedback.errors


def test_signal_during_the_moves_finishes_them_and_says_so(qgis_app, tmp_path, monkeypatch):
    """SIGTERM while the staged outputs are moved into place (here: before the first move): the moves are
    not cut short (each output complete, or the previous one restored), the log says every output was written."""
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback

    from subsidence_toolkit.core.io.staging import StagedFiles

    real = StagedFiles.commit

    def commit(self):
        signal.raise_signal(signal.SIGTERM)  # the handler records it and raises nothing here
        return real(self)

    monkeypatch.setattr(StagedFiles, "commit", commit)
    received, errors = [], []

    class Feedback(QgsProcessingFeedback):
        def reportError(self, text, fatal=False):  # noqa: N802
            errors.append(text)

    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        out = tmp_path / "result.tif"
        _, ok = _toy_algorithm(lambda feedback: None).run({"OUTPUT": str(out)}, QgsProcessingContext(), Feedback())
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert received == [signal.SIGTERM]
    assert sorted(os.listdir(tmp_path)) == ["result.tif"]  # written completely, nothing staged left
    assert gdal.Open(str(out)).ReadAsArray().tolist() == np.ones((3, 4)).tolist()
    assert any("after every output was written" in e for e in errors), errors
    assert not ok  # the run still stops (the handler from before the run decides what happens next)


def test_signals_during_clean_up_are_recorded_not_raised():
    from subsidence_toolkit.processing_provider.transaction import Interrupted, interrupt_guard

    # a job a shell starts in the background inherits SIGINT ignored, and the guard leaves an ignored signal alone
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with interrupt_guard() as state:
            state.arm()
            state.hold()
            signal.raise_signal(signal.SIGTERM)
            signal.raise_signal(signal.SIGINT)
            assert state.received == [signal.SIGTERM, signal.SIGINT]
            with pytest.raises(Interrupted) as got:
                state.check()
            assert got.value.signum == signal.SIGTERM
    finally:
        signal.signal(signal.SIGINT, previous)


def _signal_stops(state, signum):
    """Send ``signum`` to this process inside an armed guard: the handler raises Interrupted at once where handlers
    may raise (Python < 3.12), else records it (and cancels) and the guard's check raises it. Returns it."""
    from subsidence_toolkit.core.io.tasks import SIGNAL_HANDLERS_MAY_RAISE
    from subsidence_toolkit.processing_provider.transaction import Interrupted

    if SIGNAL_HANDLERS_MAY_RAISE:
        with pytest.raises(Interrupted) as got:
            signal.raise_signal(signum)
    else:
        signal.raise_signal(signum)
        assert state.received[-1] == signum
        with pytest.raises(Interrupted) as got:
            state.check()
    return got.value


def test_signal_inside_thread_machinery_cancels_instead_of_raising():
    """Inside the window runner's shielded blocks (waiting for threads, a writer thread's lock) an exception
    would leave a lock held and hang the process: there the armed handler records the signal and cancels the
    feedback (the runner stops as the window finishes) and raises nothing; outside, it raises at once (Python < 3.12;
    from 3.12 on it never raises: see core.io.tasks.SIGNAL_HANDLERS_MAY_RAISE)."""
    from qgis.core import QgsProcessingFeedback

    from subsidence_toolkit.core.io.tasks import shielded
    from subsidence_toolkit.processing_provider.transaction import Interrupted, interrupt_guard

    feedback = QgsProcessingFeedback()
    with interrupt_guard(feedback) as state:
        state.arm()
        with shielded():
            signal.raise_signal(signal.SIGTERM)
            assert feedback.isCanceled() and state.received == [signal.SIGTERM]
        with pytest.raises(Interrupted) as got:
            state.check()  # what run_in_transaction does after the body (the runner raised Cancelled first)
        assert got.value.signum == signal.SIGTERM
        state.received.clear()
        state.arm()
        assert _signal_stops(state, signal.SIGTERM).signum == signal.SIGTERM  # outside: at once (Python < 3.12)


def _under_sigterm(delay, run):
    """``run()`` with SIGTERM sent to this process ``delay`` seconds in, and a handler from before the run that
    records it: ``(the run's error message or None, the signals that handler received)``."""
    import threading

    from qgis.core import QgsProcessingException

    received = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    killer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGTERM))
    try:
        killer.start()
        try:
            run()
            message = None
        except QgsProcessingException as e:
            message = str(e)
        killer.join()
        time.sleep(0.05)  # a signal sent after the run is handled at the next bytecode
    finally:
        signal.signal(signal.SIGTERM, previous)
    return message, received


def _sigterm_at_moments(run_alg, alg, params, outputs_of, complete, seconds, tmp_path, span=(0.05, 1.0)):
    """Run ``alg`` seven times with SIGTERM at moments spread over ``span`` x ``seconds`` (a plain run's time):
    the signal always reaches the handler from before the run exactly once, and each run either leaves its folder
    as it was ("Interrupted by SIGTERM") or writes every output (``complete(outputs)`` holds); never a staging
    file. ``outputs_of(folder)``: the output paths, previous outputs in place. Returns the outcomes seen."""
    outcomes = set()
    for i, delay in enumerate(np.linspace(span[0], span[1], 7) * seconds):
        folder = tmp_path / ("run%d" % i)
        outs = outputs_of(folder)
        before = snapshot(folder)
        message, received = _under_sigterm(delay, lambda: run_alg(alg, dict(params, **outs)))
        assert received == [signal.SIGTERM], (delay, message)
        assert not [n for n in os.listdir(folder) if "partial" in n], (delay, os.listdir(folder))
        if message is not None and "after every output was written" not in message:
            assert "Interrupted by SIGTERM" in message, message
            assert snapshot(folder) == before, delay
            outcomes.add("interrupted")
        else:
            assert complete(outs), (delay, message)
            outcomes.add("written")
    return outcomes


def test_sigterm_at_any_moment_is_never_lost(run_alg, fx, tmp_path):
    """SIGTERM sent from another thread at moments spread over a real run (GRACE downscaling in many small
    windows), in process, with a recording handler installed before the run: the signal always reaches that
    handler exactly once (never swallowed), and the run either leaves the folder as it was (failed,
    "Interrupted by SIGTERM") or writes every output completely (it finished first, or the signal came while
    the outputs were moved into place and the message says so); never a staging file."""

    params, _ = input_files(fx, "gracedownscaling")
    params["MEMORY_LIMIT_MB"] = 0.05
    t0 = time.perf_counter()
    run_alg("gracedownscaling", dict(params, **outputs_in(tmp_path / "plain", "gracedownscaling")))
    seconds = time.perf_counter() - t0
    outcomes = _sigterm_at_moments(
        run_alg,
        "gracedownscaling",
        params,
        lambda folder: previous_outputs(folder, "gracedownscaling"),
        lambda outs: (
            gdal.Open(outs["OUTPUT"]).RasterCount > 0 and Path(outs["OUTPUT_TABLE"]).read_text().count("\n") > 1
        ),
        seconds,
        tmp_path,
    )
    assert "interrupted" in outcomes, outcomes  # the moments did fall inside the run


def test_sigterm_at_any_moment_of_a_threaded_sbas_run_never_hangs(run_alg, tmp_path):
    """The SBAS inversion on two threads has the most thread machinery (window threads, the scan's copy written
    by a thread, outputs written by a thread, loop statistics and sub-blocks on inner threads): SIGTERM at moments
    spread over a run of many small windows always ends the run, reaches the handler from before exactly once and
    leaves the folder as it was or every output complete (96 windows per pass, the scan's copy kept). Seven
    moments rarely land inside a lock (the core's stress test of the runner is what reproduces that hang); a hang
    here ends the test process with every thread's stack instead of hanging the suite."""
    import faulthandler

    d = tmp_path / "ifgs"
    d.mkdir()
    dates = sentinel1_dates(start=dt.date(2020, 1, 3), n=16, gaps=())
    rng = np.random.default_rng(3)
    phase = np.cumsum(rng.normal(0, 0.3, (len(dates), 96, 96)), axis=0)  # loops close (loop closure keeps all)
    files = []
    for i, a in enumerate(dates):
        for j in range(i + 1, min(i + 4, len(dates))):
            tag = "%s_%s" % (a.strftime("%Y%m%d"), dates[j].strftime("%Y%m%d"))
            ifg = phase[j] - phase[i] + rng.normal(0, 0.05, (96, 96))
            files.append(write_stack(d / ("%s.geo.unw.tif" % tag), ifg))
    params = dict(INTERFEROGRAMS=files, THREADS=2, MEMORY_LIMIT_MB=0.3)
    names = ("OUTPUT_TIMESERIES", "OUTPUT_VELOCITY", "OUTPUT_QUALITY")
    t0 = time.perf_counter()
    run_alg("sbasinversion", dict(params, **{k: str(tmp_path / ("plain_%s.tif" % k)) for k in names}))
    seconds = time.perf_counter() - t0
    faulthandler.dump_traceback_later(120 + 20 * seconds, exit=True)

    def outputs_of(folder):
        folder.mkdir()
        outs = {k: str(folder / ("%s.tif" % k)) for k in names}
        for path in outs.values():
            Path(path).write_bytes(b"previous output of an earlier run\n")
        return outs

    try:
        outcomes = _sigterm_at_moments(
            run_alg,
            "sbasinversion",
            params,
            outputs_of,
            lambda outs: all(gdal.Open(p).RasterCount > 0 for p in outs.values()),
            seconds,
            tmp_path,
            span=(0.05, 0.95),
        )
        assert "interrupted" in outcomes, outcomes
    finally:
        faulthandler.cancel_dump_traceback_later()


def test_ctrl_c_is_not_handed_on_as_a_keyboard_interrupt():
    """Python's own SIGINT handler raises KeyboardInterrupt, which QGIS's C++ only prints as a traceback
    (qgis_process printed three): the run's one-line error is the answer."""
    from subsidence_toolkit.processing_provider.transaction import Interrupted, deliver

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        deliver(Interrupted(signal.SIGINT))  # raises nothing
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this system")
def test_hang_up_stops_the_run_too():
    """Closing the terminal or SSH session of a long qgis_process run sends SIGHUP: cleaned up like SIGTERM."""
    from subsidence_toolkit.processing_provider.transaction import interrupt_guard

    previous = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        with interrupt_guard() as state:
            state.arm()
            got = _signal_stops(state, signal.SIGHUP)
        assert got.signum == signal.SIGHUP and state.received == [signal.SIGHUP]
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_DFL  # restored after the run
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_interrupt_reaches_an_enclosing_run():
    """A model's step restores the model's handler before handing the signal on: the model's guard records
    it (raising it there would throw through QGIS's C++ running the step), and its own check stops it."""
    from subsidence_toolkit.processing_provider.transaction import Interrupted, deliver, interrupt_guard

    with interrupt_guard() as outer:
        outer.arm()
        with interrupt_guard() as inner:
            inner.arm()
            _signal_stops(inner, signal.SIGTERM)
        assert inner.received == [signal.SIGTERM] and outer.received == []
        deliver(Interrupted(signal.SIGTERM))  # raises nothing in the step
        assert outer.received == [signal.SIGTERM]
        with pytest.raises(Interrupted):
            outer.check()


# ------------------------------------------------------------------------------------------ inputs named
def test_one_bad_file_in_a_list_is_named(run_alg, fx, tmp_path):
    params, _ = input_files(fx, "sbasinversion")
    for name, content in (("missing", None), ("empty", b""), ("text", b"not a raster\n")):
        bad = tmp_path / ("20200103_20200127_%s.geo.unw.tif" % name)
        if content is not None:
            bad.write_bytes(content)
        p = dict(
            params, INTERFEROGRAMS=params["INTERFEROGRAMS"] + [str(bad)], **outputs_in(tmp_path / name, "sbasinversion")
        )
        expect_failure(run_alg, "sbasinversion", p, r"INTERFEROGRAMS: .*%s" % bad.name, [fx["dir"], tmp_path])


def test_line_layer_refused_as_polygon_mask(run_alg, fx, tmp_path):
    line = tmp_path / "line.geojson"
    line.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {},
                        "geometry": {"type": "LineString", "coordinates": [[110.2, 35.2], [111.5, 36.6]]},
                    }
                ],
            }
        )
    )
    params, _ = input_files(fx, "groundwateranomaly")
    p = dict(params, MASK=str(line), **outputs_in(tmp_path / "o", "groundwateranomaly"))
    expect_failure(
        run_alg, "groundwateranomaly", p, r"MASK: .* holds line features; give a polygon layer", [fx["dir"], tmp_path]
    )


@pytest.mark.parametrize(
    "key,value,pattern",
    [
        ("MEASUREMENTS_CRS", "EPSG:999999", r"MEASUREMENTS_CRS: .*not a known coordinate reference system"),
        ("VALUE_SCALE", "nan", r"VALUE_SCALE: .*not a finite number"),
    ],
)
def test_bad_crs_and_scale_are_named(run_alg, fx, tmp_path, key, value, pattern):
    params, _ = input_files(fx, "validatetimeseries")
    p = dict(params, **{key: value}, **outputs_in(tmp_path / "o", "validatetimeseries"))
    expect_failure(run_alg, "validatetimeseries", p, pattern, [fx["dir"], tmp_path])


def test_geopackage_layer_of_an_input_geopackage_is_refused(run_alg, fx, tmp_path):
    """Writing a new layer into the GeoPackage an input comes from is refused too (it rewrites that file)."""
    gpkg = tmp_path / "data.gpkg"
    gdal.VectorTranslate(
        str(gpkg),
        fx["measurements"],
        options="-nln obs -oo X_POSSIBLE_NAMES=x -oo Y_POSSIBLE_NAMES=y -a_srs EPSG:32649",
    )
    params, _ = input_files(fx, "validatetimeseries")
    params.update(MEASUREMENTS=str(gpkg) + "|layername=obs", X_FIELD=None, Y_FIELD=None)
    p = dict(
        params, OUTPUT="ogr:dbname='%s' table=\"validation\" (geom)" % gpkg, OUTPUT_SUMMARY=str(tmp_path / "s.csv")
    )
    expect_failure(
        run_alg,
        "validatetimeseries",
        p,
        r"OUTPUT: the output .*data.gpkg would overwrite the input "
        r"MEASUREMENTS",
        [fx["dir"], tmp_path],
    )


def test_new_layer_in_an_existing_geopackage_keeps_its_other_layers(run_alg, fx, tmp_path):
    gpkg = tmp_path / "results.gpkg"
    gdal.VectorTranslate(str(gpkg), fx["lagtable"], options="-nln keep")
    params, _ = input_files(fx, "validatetimeseries")
    res = run_alg(
        "validatetimeseries",
        dict(
            params, OUTPUT="ogr:dbname='%s' table=\"validation\" (geom)" % gpkg, OUTPUT_SUMMARY=str(tmp_path / "s.csv")
        ),
    )
    ds = gdal.OpenEx(str(gpkg), gdal.OF_VECTOR)
    names = {ds.GetLayer(i).GetName() for i in range(ds.GetLayerCount())}
    assert names == {"keep", "validation"} and ds.GetLayerByName("keep").GetFeatureCount() == 24
    assert ds.GetLayerByName("validation").GetFeatureCount() == 72
    assert res["OUTPUT"].startswith(str(gpkg))
    assert sorted(os.listdir(tmp_path)) == ["results.gpkg", "s.csv", "s.csvt"]


def test_second_run_replaces_previous_outputs_and_their_stale_sidecars(run_alg, fx, tmp_path):
    outs = outputs_in(tmp_path, "resampletimeseries")
    Path(outs["OUTPUT"]).write_bytes(b"old")
    Path(outs["OUTPUT"] + ".aux.xml").write_text(
        "<PAMDataset><Metadata><MDI key='STALE'>1</MDI></Metadata></PAMDataset>"
    )
    run_alg("resampletimeseries", dict(input_files(fx, "resampletimeseries")[0], **outs))
    ds = gdal.Open(outs["OUTPUT"])
    assert ds.RasterCount == 24 and "STALE" not in (ds.GetMetadata() or {})
    assert os.listdir(tmp_path) == [os.path.basename(outs["OUTPUT"])]


# ------------------------------------------------------------------------------------------ the model
def _workflow_parameters(w, out, **changes):
    from subsidence_toolkit.demo.step_90_workflow import FLDAS_VARS, _pattern

    files = "\n".join(_pattern(w["fldas"], v) for v in FLDAS_VARS)
    params = {
        "interferograms": w["interferograms"],
        "coherence": w["coherence"],
        "grace": w["grace"],
        "model_files": files,
        "component_files": files,
        "baseline_start": 2020.0,
        "baseline_end": 2021.999,
        "areas": w["areas"],
        "area_field": "area",
        "points_per_class": 20,
        "max_lag": 2,
        "factors": list(w["factors"].values()),
        "classes": 5,
    }
    for name, f in (
        ("sbas:LOS velocity", "v.tif"),
        ("sbas:LOS displacement time series", "ts.tif"),
        ("sbas:SBAS quality", "q.tif"),
        ("sbas:Interferogram network", "net.csv"),
        ("monthly:Monthly displacement", "m.tif"),
        ("downscaling:Downscaled TWSA", "td.tif"),
        ("gwsa:GWSA", "gwsa.tif"),
        ("classes:Class sample points", "p.gpkg"),
        ("classes:Class time series", "classes.csv"),
        ("lag:Lagged correlation", "lag.csv"),
        ("lag:Lagged correlation report", "lag.html"),
        ("geodetector:Geodetector factors", "gd.csv"),
        ("geodetector:Geodetector interactions", "gdi.csv"),
        ("geodetector:Geodetector report", "gd.html"),
        ("report:Workflow report", "report.html"),
    ):
        params[name] = str(out / f)
    params.update(changes)
    return params


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    from subsidence_toolkit.demo import world

    d = tmp_path_factory.mktemp("wf")
    return d, world.generate(d / "world", tiny=True)


def test_workflow_step_failure_names_the_step_and_leaves_nothing(run_alg, tiny_world, tmp_path):
    """A late step of the shipped workflow fails: the message names that step and why, and the outputs of
    the steps that had already finished are removed too (the model's outputs are one transaction)."""
    d, w = tiny_world
    out = tmp_path / "out"
    out.mkdir()
    Path(out / "v.tif").write_bytes(b"previous velocity\n")
    params = _workflow_parameters(w, out, baseline_start=1990.0, baseline_end=1991.0)
    message = expect_failure(
        run_alg,
        "subsidence:workflow",
        params,
        r'^step "Groundwater storage anomaly.*" '
        r"failed: .*baseline 1990.000-1991.000 is outside",
        [d, out],
    )
    assert os.listdir(out) == ["v.tif"] and "partial" not in message, message


def test_sigterm_during_the_workflow_stops_it_and_leaves_nothing(run_alg, tiny_world, tmp_path):
    """SIGTERM at moments spread over a run of the shipped workflow (the model's own transaction around its
    steps' transactions): the handler from before the run gets it once, and the model either leaves its
    output folder as it was or finished before the signal; never a step's output or a staging file."""

    d, w = tiny_world
    plain = tmp_path / "plain"
    plain.mkdir()
    t0 = time.perf_counter()
    run_alg("subsidence:workflow", _workflow_parameters(w, plain))
    seconds = time.perf_counter() - t0
    outcomes = []
    # the first run may pay one-time costs (imports, caches) the later ones do not: if every run finished before
    # its signal, earlier moments are tried, so that the test always sees an interrupted run too
    fractions = [0.25, 0.65, 0.1, 0.04, 0.015]
    for i, fraction in enumerate(fractions):
        if i >= 2 and "interrupted" in outcomes:
            break
        out = tmp_path / ("run%d" % i)
        out.mkdir()
        delay = fraction * seconds
        message, received = _under_sigterm(delay, lambda: run_alg("subsidence:workflow", _workflow_parameters(w, out)))
        assert received == [signal.SIGTERM], (delay, message)
        if message is None:
            assert sorted(os.listdir(out)) == sorted(os.listdir(plain))
            outcomes.append("written")
        else:
            assert "Interrupted by SIGTERM" in message, message
            assert os.listdir(out) == [], (delay, os.listdir(out))
            outcomes.append("interrupted")
    assert "interrupted" in outcomes, (seconds, outcomes)


def test_workflow_input_damage_is_named_before_any_step_runs(run_alg, tiny_world, tmp_path):
    d, w = tiny_world
    broken = tmp_path / "broken_grace.nc"
    src = w["grace"].split('"')[1] if w["grace"].startswith("NETCDF:") else w["grace"]
    broken.write_bytes(Path(src).read_bytes()[:2000])
    out = tmp_path / "out"
    out.mkdir()
    expect_failure(
        run_alg,
        "subsidence:workflow",
        _workflow_parameters(w, out, grace=str(broken)),
        r"^grace: .*broken_grace.nc is truncated",
        [d, tmp_path],
    )


def test_truncated_month_in_a_netcdf_file_list_is_named(run_alg, fx, tmp_path):
    """One monthly FLDAS file of a wildcard list cut short (it used to be read as 0 mm for that month)."""
    import glob
    import shutil

    src = os.path.dirname(fx["sm"].split('"')[1])
    copy = tmp_path / "fldas"
    shutil.copytree(src, copy)
    month = sorted(glob.glob(str(copy / "FLDAS_*A200406*.nc")))[0]
    data = Path(month).read_bytes()
    Path(month).write_bytes(data[: len(data) - 100])
    params, _ = input_files(fx, "gracedownscaling")
    params["MODEL_FILES"] = fx["sm"].replace(src, str(copy))
    outs = previous_outputs(tmp_path / "out", "gracedownscaling")
    expect_failure(
        run_alg,
        "gracedownscaling",
        dict(params, **outs),
        r"MODEL_FILES: .*A200406.001.nc is truncated",
        [fx["dir"], tmp_path],
    )


# ------------------------------------------------------------------------------------------ silently wrong results
@pytest.mark.parametrize(
    "changes,pattern",
    [
        ({"MIN_VALID": 1000000}, r"MIN_VALID\) is 1000000 but the input has only 24 dates"),
        ({"START": "1990-01-01", "END": "1995-12-31"}, r"target dates 1990-01-15 .. 1995-12-15 lie outside the input"),
        (
            {"STEP": 1, "STEP_DAYS": 1, "START": "1900-01-01", "END": "2100-12-31"},
            r"would need 73414 bands but a GeoTIFF holds at most 65535",
        ),
        ({"INPUT": "all_nan"}, r"every output pixel is NoData"),
    ],
)
def test_resampling_that_can_only_give_nodata_fails(run_alg, fx, tmp_path, changes, pattern):
    params = dict(input_files(fx, "resampletimeseries")[0], **changes)
    if params["INPUT"] == "all_nan":
        params["INPUT"] = write_stack(tmp_path / "nan.tif", np.full((24, 4, 5), np.nan), dates=MONTHS)
    outs = previous_outputs(tmp_path / "out", "resampletimeseries")
    expect_failure(run_alg, "resampletimeseries", dict(params, **outs), pattern, [fx["dir"], tmp_path])


def _coherence_files(fx, folder, values, dtype=gdal.GDT_Float32):
    folder.mkdir()
    out = []
    for f in fx["ifgs"]:
        name = os.path.basename(f).replace(".geo.unw.tif", ".geo.cc.tif")
        out.append(write_stack(folder / name, np.full((10, 12), values, dtype=float), dtype=dtype))
    return out


@pytest.mark.parametrize("kind", ["out_of_range", "all_nan"])
def test_bad_coherence_is_named(run_alg, fx, tmp_path, kind):
    cohs = _coherence_files(fx, tmp_path / "coh", 4.0 if kind == "out_of_range" else np.nan)
    params = dict(input_files(fx, "sbasinversion")[0], COHERENCE=cohs, **outputs_in(tmp_path / "o", "sbasinversion"))
    pattern = (
        r"\.geo\.cc\.tif: coherence values from 4 to 4 lie outside \[0, 1\]"
        if kind == "out_of_range"
        else r"coherence .*\.geo\.cc\.tif has no valid pixel \(all NoData\)"
    )
    expect_failure(run_alg, "sbasinversion", params, pattern, [fx["dir"], tmp_path])


def test_8bit_coherence_up_to_255_is_not_refused(run_alg, fx, tmp_path):
    """A Byte coherence band holds 0-255 (scaled to 0-1 by its reader): never refused as out of range."""
    cohs = _coherence_files(fx, tmp_path / "coh", 200, dtype=gdal.GDT_Byte)
    outs = outputs_in(tmp_path / "o", "sbasinversion")
    run_alg("sbasinversion", dict(input_files(fx, "sbasinversion")[0], COHERENCE=cohs, **outs))
    assert all(os.path.getsize(p) > 0 for p in outs.values())


def test_all_nodata_factor_is_named_as_such(run_alg, fx, tmp_path):
    empty = write_stack(tmp_path / "empty_factor.tif", np.full((8, 9), -9999.0), nodata=-9999.0)
    params = dict(
        input_files(fx, "geodetector")[0], FACTOR_RASTERS=[empty], **outputs_in(tmp_path / "o", "geodetector")
    )
    expect_failure(
        run_alg, "geodetector", params, r"empty_factor.tif has no valid pixel \(all NoData\)", [fx["dir"], tmp_path]
    )


def test_sample_ratio_parse_error_names_the_parameter(run_alg, fx, tmp_path):
    params = dict(
        input_files(fx, "geodetector")[0],
        SUBSIDENCE_THRESHOLD=-15,
        SAMPLE_RATIO="abc",
        **outputs_in(tmp_path / "o", "geodetector"),
    )
    expect_failure(run_alg, "geodetector", params, r"SAMPLE_RATIO: 'abc' is not a ratio", [fx["dir"], tmp_path])


def test_duplicate_observations_are_refused(run_alg, fx, tmp_path):
    dup = tmp_path / "dup.csv"
    lines = Path(fx["measurements"]).read_text().splitlines()
    dup.write_text("\n".join(lines + lines[1:]) + "\n")
    params = dict(
        input_files(fx, "validatetimeseries")[0],
        MEASUREMENTS=str(dup),
        **outputs_in(tmp_path / "o", "validatetimeseries"),
    )
    expect_failure(
        run_alg, "validatetimeseries", params, r"id p0 has 2 observations on 2004-01-15", [fx["dir"], tmp_path]
    )


def test_driver_specs_are_not_mistaken_for_missing_files(qgis_app):
    """NETCDF:"file":variable, /vsizip/ paths and layer ids are checked through the files they name
    (truncation), never refused as missing paths."""
    from subsidence_toolkit.processing_provider.transaction import _is_path_value

    assert not _is_path_value('NETCDF:"/data/grace.nc":lwe_thickness')
    assert not _is_path_value("/vsizip//data/stack.zip/a.tif") and not _is_path_value("layer_1234")
    assert _is_path_value("/data/ts.tif") and _is_path_value("/data/obs.gpkg|layername=obs")


def test_all_nodata_water_balance_fails(run_alg, fx, tmp_path):
    """A TWSA raster without one valid value: an error naming the output, not an empty GWSA raster."""
    nan_twsa = write_stack(
        tmp_path / "nan_twsa.tif",
        np.full((24, 20, 20), np.nan),
        dates=MONTHS,
        epsg=4326,
        origin=(110.0, 37.0),
        pixel=0.1,
    )
    params = dict(input_files(fx, "groundwateranomaly")[0], TWSA=nan_twsa)
    outs = previous_outputs(tmp_path / "out", "groundwateranomaly")
    expect_failure(
        run_alg,
        "groundwateranomaly",
        dict(params, **outs),
        r"NaN over the whole study area|every value is NoData",
        [fx["dir"], tmp_path],
    )


def test_rows_lost_on_the_way_fail_the_run(run_alg, fx, tmp_path, monkeypatch):
    """The staged table is re-read and its rows counted: a writer that lost rows fails the run."""
    from subsidence_toolkit.processing_provider.base import SubsidenceAlgorithm

    real = SubsidenceAlgorithm.expect_rows
    monkeypatch.setattr(SubsidenceAlgorithm, "expect_rows", lambda self, name, n: real(self, name, n + 1))
    outs = previous_outputs(tmp_path / "out", "laggedcorrelation")
    expect_failure(
        run_alg,
        "laggedcorrelation",
        dict(input_files(fx, "laggedcorrelation")[0], **outs),
        r"OUTPUT: only 3 of 4 rows reached .*out_output.csv",
        [fx["dir"], tmp_path],
    )


def test_headless_output_equal_to_input_exits_nonzero_with_one_line(qp, fx, tmp_path):
    """The issue's first case through qgis_process.bin: it used to exit 0 and destroy the input."""
    src = tmp_path / "ts.tif"
    src.write_bytes(Path(fx["ts"]).read_bytes())
    before = snapshot(tmp_path)
    proc = qp.call(["run", "subsidence:resampletimeseries", "--", "INPUT=%s" % src, "OUTPUT=%s" % src])
    assert proc.returncode != 0
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if "would overwrite the input" in line]
    assert errors and "OUTPUT: the output %s would overwrite the input INPUT" % src in errors[0], proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("kind", ["unw", "cc", "U"])
def test_output_equal_to_a_file_found_in_the_input_folder_is_refused(run_alg, kind, tmp_path):
    """INPUT_FOLDER names a folder, not the files it holds: an output pointed at one of the interferograms,
    coherence or geometry files found in a LiCSAR frame download used to overwrite it (exit 0)."""
    from product_layouts import FRAME, write_licsar_frame

    frame = tmp_path / "frame"
    written = write_licsar_frame(frame)
    target = {
        "unw": written["unw"][0],
        "cc": written["cc"][0],
        "U": os.path.join(str(frame), "metadata", "%s.geo.U.tif" % FRAME),
    }[kind]
    outs = previous_outputs(tmp_path / "out", "sbasinversion")
    outs["OUTPUT_VELOCITY"] = target
    expect_failure(
        run_alg,
        "sbasinversion",
        dict(INPUT_FOLDER=str(frame), OUTPUT_COMPONENT=1, **outs),
        r"OUTPUT_VELOCITY: the output .* would overwrite the input INPUT_FOLDER",
        [frame, tmp_path],
    )


@pytest.mark.parametrize("at_message", [1, 12, 40])
def test_sigterm_inside_a_feedback_method_called_from_qgis_cpp_does_not_abort(
    run_alg, tiny_world, tmp_path, at_message
):
    """The shipped workflow runs its steps in QGIS's C++, which calls the model's feedback methods (Python) for every
    message of every step. A SIGTERM handled inside one of them (here: the caller's feedback sends it to the
    process from its n-th message, so the handler runs in Python called from C++: before the model starts a step,
    or while a step's own handler is armed) must not raise out of it - PyQt aborts the process when an exception
    escapes into C++ (seen in CI: "Fatal Python error: Aborted"). The run stops with the one-line error, leaves the
    output folder empty, and the handler from before the run gets the signal once."""
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    d, w = tiny_world
    out = tmp_path / "out"
    out.mkdir()

    class Sender(QgsProcessingFeedback):
        n = 0

        def pushInfo(self, info):  # noqa: N802
            Sender.n += 1
            if Sender.n == at_message:
                os.kill(os.getpid(), signal.SIGTERM)
                sum(range(1000))  # the handler runs at one of these bytecodes, inside this method

    received = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        with pytest.raises(QgsProcessingException) as got:
            run_alg("subsidence:workflow", _workflow_parameters(w, out), feedback=Sender())
        time.sleep(0.05)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert Sender.n >= at_message
    assert "Interrupted by SIGTERM" in str(got.value), str(got.value)
    assert os.listdir(out) == []
    assert received == [signal.SIGTERM]
