"""Staged outputs, input file resolution and file integrity checks (no QGIS)."""

import json
import os
import socket
import subprocess
import zipfile

import numpy as np
import pytest
from osgeo import gdal

from subsidence_toolkit.core.io import integrity, staging
from subsidence_toolkit.core.io.errors import TimeSeriesError
from subsidence_toolkit.core.io.rasters import RasterWriter, grid_from_origin


def test_source_files_resolves_every_spelling(tmp_path):
    nc = tmp_path / "grace.nc"
    nc.write_bytes(b"x")
    months = [tmp_path / ("FLDAS.A2004%02d.nc" % m) for m in (1, 2)]
    for m in months:
        m.write_bytes(b"x")
    gpkg = tmp_path / "data.gpkg"
    gpkg.write_bytes(b"x")
    archive = tmp_path / "stack.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("inner.tif", "x")
    sf = staging.source_files
    assert sf('NETCDF:"%s":lwe_thickness' % nc) == [str(nc)]
    assert sf('NETCDF:"%s":SoilMoi' % (tmp_path / "FLDAS.A*.nc")) == sorted(str(m) for m in months)
    assert sf("GPKG:%s:layer" % gpkg) == [str(gpkg)]
    assert sf("%s|layername=obs" % gpkg) == [str(gpkg)]
    assert sf("dbname='%s' table=\"t\" (geom)" % gpkg) == [str(gpkg)]
    assert sf("/vsizip/%s/inner.tif" % archive) == [str(archive)]
    assert sf("%s; %s\n%s" % (nc, gpkg, tmp_path / "missing.tif")) == [str(nc), str(gpkg)]
    assert sf("1:2") == [] and sf("") == [] and sf(None) == []


def test_same_file_sees_links(tmp_path):
    a = tmp_path / "a.tif"
    a.write_bytes(b"data")
    os.link(a, tmp_path / "hard.tif")
    os.symlink(a, tmp_path / "soft.tif")
    assert staging.same_file(a, tmp_path / "hard.tif") and staging.same_file(a, tmp_path / "soft.tif")
    assert not staging.same_file(a, tmp_path / "other.tif")
    keys = staging.input_file_set([str(tmp_path / "soft.tif")])
    assert staging.file_key(str(tmp_path / "hard.tif")) in keys


def test_commit_moves_all_outputs_with_sidecars_and_drops_stale_ones(tmp_path):
    out, table = tmp_path / "v.tif", tmp_path / "t.shp"
    out.write_bytes(b"previous")
    (tmp_path / "v.tif.aux.xml").write_text("stale statistics")
    files = staging.StagedFiles()
    s1, s2 = files.add(out), files.add(table)
    assert os.path.basename(s1).startswith(".v.") and s1.endswith(".partial.tif")
    open(s1, "wb").write(b"new")
    for ext in (".shp", ".dbf", ".shx"):
        open(s2[:-4] + ext, "wb").write(ext.encode())
    files.commit()
    assert out.read_bytes() == b"new" and not (tmp_path / "v.tif.aux.xml").exists()
    assert sorted(os.listdir(tmp_path)) == ["t.dbf", "t.shp", "t.shx", "v.tif"]


def test_rollback_and_failed_commit_keep_previous_outputs(tmp_path):
    a, b = tmp_path / "a.tif", tmp_path / "b.csv"
    a.write_bytes(b"old a")
    b.write_bytes(b"old b")
    files = staging.StagedFiles()
    sa, sb = files.add(a), files.add(b)
    open(sa, "wb").write(b"new a")
    open("%s.1234.partial.tif" % os.path.join(tmp_path, "." + os.path.basename(sa)), "wb").write(b"writer tmp")
    files.rollback()
    assert sorted(os.listdir(tmp_path)) == ["a.tif", "b.csv"] and a.read_bytes() == b"old a"
    # a commit that fails half way puts the first output back
    files = staging.StagedFiles()
    sa, sb = files.add(a), files.add(b)
    open(sa, "wb").write(b"new a")
    open(sb, "wb").write(b"new b")
    os.chmod(tmp_path, 0o755)
    real = os.replace
    calls = []

    def failing_replace(src, dst):
        calls.append(dst)
        if str(dst) == str(b) and str(src) == sb:
            raise OSError(28, "No space left on device")
        return real(src, dst)

    staging.os.replace = failing_replace
    try:
        with pytest.raises(OSError):
            files.commit()
    finally:
        staging.os.replace = real
    assert a.read_bytes() == b"old a" and b.read_bytes() == b"old b"
    assert sorted(os.listdir(tmp_path)) == ["a.tif", "b.csv"]


def test_raster_writer_commit_failure_aborts(tmp_path, monkeypatch):
    from subsidence_toolkit.core.io import rasters

    grid = grid_from_origin(0, 10, 1, 1, 4, 3)
    out = tmp_path / "o.tif"

    def broken_check(path, grid=None, nbands=None):
        raise TimeSeriesError("%s is incomplete: band 1 cannot be read" % path)

    monkeypatch.setattr(rasters, "check_written_raster", broken_check)
    with pytest.raises(OSError, match="o.tif could not be written"):
        with RasterWriter(out, grid, 1) as w:
            w.write_block(0, np.zeros((1, 3, 4)))
    assert os.listdir(tmp_path) == []


def test_raster_writer_refuses_more_bands_than_geotiff_holds(tmp_path):
    with pytest.raises(TimeSeriesError, match="70000 bands but a GeoTIFF holds at most 65535"):
        RasterWriter(tmp_path / "o.tif", grid_from_origin(0, 1, 1, 1, 1, 1), 70000).open()
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("fmt", ["NC", "NC2", "NC4", "NC4C"])
def test_truncated_netcdf_is_detected(tmp_path, fmt):
    p = tmp_path / ("f_%s.nc" % fmt)
    ds = gdal.GetDriverByName("netCDF").Create(str(p), 30, 20, 3, gdal.GDT_Float32, ["FORMAT=" + fmt])
    ds.SetGeoTransform((0, 1, 0, 0, 0, -1))
    for b in range(3):
        ds.GetRasterBand(b + 1).WriteArray(np.arange(600, dtype=np.float32).reshape(20, 30))
    ds = None
    assert integrity.file_damage(p) is None
    data = p.read_bytes()
    p.write_bytes(data[: len(data) - 200])
    assert "is truncated" in integrity.file_damage(p)
    p.write_bytes(b"")
    assert "empty (0-byte)" in integrity.file_damage(p)


def test_staging_folder_keeps_names_and_commits_everything(tmp_path):
    """A model's outputs are staged under their own names in one hidden folder (reports that link each other
    stay consistent); commit empties and removes the folder, rollback removes it."""
    files = staging.StagedFiles(staging_dir=True)
    s1, s2 = files.add(tmp_path / "report.html"), files.add(tmp_path / "lag.html")
    assert os.path.dirname(s1) == os.path.dirname(s2) and os.path.basename(s1) == "report.html"
    assert staging.inside_staging_dir(s1) and not staging.inside_staging_dir(tmp_path / "report.html")
    open(s1, "w").write("<a href='lag.html'>")
    open(s2, "w").write("lag")
    files.commit()
    assert sorted(os.listdir(tmp_path)) == ["lag.html", "report.html"]
    files = staging.StagedFiles(staging_dir=True)
    open(files.add(tmp_path / "x.tif"), "wb").write(b"x")
    files.rollback()
    assert sorted(os.listdir(tmp_path)) == ["lag.html", "report.html"]


# ------------------------------------------------------------------------------------------ killed runs
needs_markers = pytest.mark.skipif(not staging.markers_supported(), reason="run markers need POSIX")


def _dead_pid():
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def _user_files(folder):
    """A previous output, a commit's backup of one (the user's data) and a staged-looking file no marker names."""
    names = ["out.tif", ".out.backup-1a2b3c.partial.tif", ".x.deadbeef.partial.tif"]
    for n in names:
        (folder / n).write_bytes(b"user data")
    return names


def _killed_run(folder, pid, host=None, boot="this boot", start=None):
    """What a run killed with kill -9 leaves: staged files (a raster with GDAL's side-car, a GeoPackage staged
    under a single-dot name, a model's staging folder) and its marker."""
    staged = [".out.1a2b3c4d.partial.tif", "table-0a1b2c3d-partial.gpkg", ".subsidence-0123456789.partial"]
    for n in staged[:2] + [".out.1a2b3c4d.partial.tif.aux.xml", "..out.1a2b3c4d.partial.tif.0f1e2d3c.partial.tif"]:
        (folder / n).write_bytes(b"half written")
    (folder / staged[2]).mkdir()
    (folder / staged[2] / "report.html").write_text("half written")
    marker = folder / ".subsidence-abc123.run"
    marker.write_text(
        json.dumps(
            {
                "host": host or socket.gethostname(),
                "boot": staging._boot_id() if boot == "this boot" else boot,
                "pid": pid,
                "start": start,
                "staged": staged,
            }
        )
    )
    return marker


@needs_markers
def test_a_killed_runs_staged_files_go_with_the_next_run_and_nothing_else(tmp_path):
    keep = _user_files(tmp_path)
    _killed_run(tmp_path, _dead_pid())
    files = staging.StagedFiles()
    new = files.add(str(tmp_path / "new.tif"))
    assert sorted(os.path.basename(p) for p in files.stale) == sorted(
        [
            ".out.1a2b3c4d.partial.tif",
            ".out.1a2b3c4d.partial.tif.aux.xml",
            "..out.1a2b3c4d.partial.tif.0f1e2d3c.partial.tif",  # the writer's own temporary of the staged file
            "table-0a1b2c3d-partial.gpkg",
            ".subsidence-0123456789.partial",
        ]
    )
    ours = [n for n in os.listdir(tmp_path) if staging.RUN_MARKER.match(n)]
    assert len(ours) == 1  # this run's marker, naming its staged file
    assert json.loads((tmp_path / ours[0]).read_text())["staged"] == [os.path.basename(new)]
    files.rollback()
    assert sorted(os.listdir(tmp_path)) == sorted(keep)  # the user's files, the backup among them, untouched


@needs_markers
def test_a_live_runs_staged_files_are_kept(tmp_path):
    first = staging.StagedFiles()
    staged = first.add(str(tmp_path / "a.tif"))
    open(staged, "wb").close()
    second = staging.StagedFiles()  # same process, same folder: the first run holds its marker's lock
    second.add(str(tmp_path / "b.tif"))
    assert second.stale == [] and os.path.exists(staged)
    second.rollback()
    first.commit()
    assert sorted(os.listdir(tmp_path)) == ["a.tif"]  # committed, and both markers gone


@needs_markers
@pytest.mark.parametrize(
    "case, removed",
    [
        ("another machine", False),
        ("before the last boot", True),  # a power cut: the process number means nothing now
        ("same number, another process", True),
        ("the same process, alive", False),
    ],
)
def test_whose_leftovers_are_removed(tmp_path, case, removed):
    alive = os.getppid()
    real_start = staging._start_time(alive)
    if case == "another machine":
        _killed_run(tmp_path, _dead_pid(), host="another-machine.example")
    elif case == "before the last boot":
        if staging._boot_id() is None:
            pytest.skip("no boot id here")
        _killed_run(tmp_path, alive, boot="0000-a-boot-before")
    elif case == "same number, another process":
        if real_start is None:
            pytest.skip("no process start times here")
        _killed_run(tmp_path, alive, start=str(int(real_start) + 1))
    else:
        _killed_run(tmp_path, alive, start=real_start)
    files = staging.StagedFiles()
    files.add(str(tmp_path / "new.tif"))
    assert bool(files.stale) == removed
    assert os.path.exists(tmp_path / ".out.1a2b3c4d.partial.tif") != removed
    files.rollback()


# a run that stages three outputs in one folder (two replace previous files, one of them with GDAL's
# statistics side-car; one is new), beside them or in a hidden staging folder, then dies of kill -9 just before its
# STEP-th rename or removal during the commit
_KILLED_COMMIT = r"""
import importlib.util, os, signal, sys
spec = importlib.util.spec_from_file_location("staging", sys.argv[1])
staging = importlib.util.module_from_spec(spec)
spec.loader.exec_module(staging)
folder, step = sys.argv[2], int(sys.argv[3])
files = staging.StagedFiles(staging_dir=sys.argv[4] == "staging folder")
for name in ("c.txt", "a.tif", "b.csv"):
    with open(files.add(os.path.join(folder, name)), "w") as f:
        f.write("new " + name)
with open(files.items[1][1] + ".aux.xml", "w") as f:  # GDAL's side-car of the staged a.tif rides with it
    f.write("new statistics")
calls = [0]
def dying(real):
    def call(*args):
        calls[0] += 1
        if calls[0] == step:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args)
    return call
os.replace, os.remove = dying(os.replace), dying(os.remove)
files.commit()
print(calls[0])
"""


def _visible(folder):
    return {n: (folder / n).read_text() for n in sorted(os.listdir(folder))}


@needs_markers
@pytest.mark.parametrize("how", ["beside", "staging folder"])
def test_a_run_killed_at_any_step_of_its_commit_is_undone_or_finished_by_the_next_run(tmp_path, how):
    """kill -9 before each rename and removal of the commit in turn: the next run into the folder leaves
    exactly the previous files (killed while moving) or exactly the new ones (killed after the last move),
    never a mixture, never a lost file, and no hidden file."""
    previous = {"a.tif": "old a.tif", "a.tif.aux.xml": "old statistics", "b.csv": "old b.csv", "keep.txt": "mine"}
    new = {"a.tif": "new a.tif", "a.tif.aux.xml": "new statistics", "b.csv": "new b.csv", "c.txt": "new c.txt"}
    new["keep.txt"] = "mine"
    outcomes, step = [], 1
    while True:
        folder = tmp_path / ("step%d" % step)
        folder.mkdir()
        for n, text in previous.items():
            (folder / n).write_text(text)
        child = subprocess.run(
            ["/usr/bin/python3", "-c", _KILLED_COMMIT, staging.__file__, str(folder), str(step), how],
            capture_output=True,
            text=True,
        )
        if child.returncode == 0:  # the commit made fewer calls than STEP: it ran to the end
            assert _visible(folder) == new
            break
        assert child.returncode == -9, child.stderr
        assert any(n.startswith(".") for n in os.listdir(folder))  # it did leave hidden files
        files = staging.StagedFiles()
        files.add(str(folder / "next.tif"))
        files.rollback()
        state = _visible(folder)
        assert state in (previous, new), (step, state)
        outcomes.append("previous" if state == previous else "new")
        if state == previous and step > 1:  # c.txt (no previous file) was moved first: removed again
            assert files.recovered["removed"] == [str(folder / "c.txt")]
            assert len(files.recovered["restored"]) == {2: 0, 3: 1, 4: 1, 5: 2, 6: 2, 7: 3}[step]
        assert files.recovered.get("kept", []) == []
        step += 1
    # 7 renames, 3 backups removed, the marker removed: killed before each
    assert outcomes[:7] == ["previous"] * 7 and set(outcomes[7:]) == {"new"}, outcomes
    assert len(outcomes) == 11


@needs_markers
def test_recovery_never_touches_a_file_the_user_wrote_since(tmp_path):
    """A run killed after it set the previous output aside, with the user writing a new file at that name
    before the next run: the user's file stays and so does the hidden copy (reported, for the user)."""
    (tmp_path / "a.tif").write_text("old")
    child = subprocess.run(  # killed before its 3rd rename: c.txt moved in, a.tif set aside
        ["/usr/bin/python3", "-c", _KILLED_COMMIT, staging.__file__, str(tmp_path), "3", "beside"],
        capture_output=True,
        text=True,
    )
    assert child.returncode == -9, child.stderr
    assert not (tmp_path / "a.tif").exists()  # set aside, the new one not yet in
    (tmp_path / "a.tif").write_text("the user's own")
    files = staging.StagedFiles()
    files.add(str(tmp_path / "next.tif"))
    files.rollback()
    assert (tmp_path / "a.tif").read_text() == "the user's own"
    kept = files.recovered["kept"]
    assert len(kept) == 1 and open(kept[0]).read() == "old"
    assert sorted(os.listdir(tmp_path)) == sorted(["a.tif", os.path.basename(kept[0])])
