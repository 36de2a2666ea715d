"""The installable zip: one top folder subsidence_toolkit/, metadata and code, no tests or dev files."""

import configparser
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_metadata_declares_processing_provider():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "metadata.txt")
    g = cfg["general"]
    assert g["name"] == "Subsidence Toolkit"
    assert g["qgisMinimumVersion"] == "3.22"
    assert g["hasProcessingProvider"] == "yes"
    assert g["category"] == "Raster"
    for tag in ("processing", "InSAR", "SBAS", "GRACE", "groundwater", "subsidence", "geodetector"):
        assert tag in g["tags"].split(","), tag
    assert (ROOT / g["icon"]).exists()
    for key in ("description", "about", "version", "author", "changelog"):
        assert g[key].strip(), key


def test_metadata_declares_qgis_3_22_to_4():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "metadata.txt")
    g = cfg["general"]
    assert (g["qgisMinimumVersion"], g["qgisMaximumVersion"]) == ("3.22", "4.99")  # QGIS 4 needs max >= 4
    assert g["supportsQt6"] == "True"
    assert g["license"] == "GPL-2.0-or-later" and (ROOT / "LICENSE").read_text().startswith(
        "                    GNU GENERAL PUBLIC LICENSE\n                       Version 2"
    )


def plugin_repository_problems(path):
    """The upload checks of the QGIS plugin repository (plugins.qgis.org), without its network checks
    (whether the URLs answer): what it would reject in this zip, as a list of sentences."""
    import re
    from urllib.parse import urlparse

    problems = []
    if path.stat().st_size > 25_000_000:
        problems.append("zip larger than 25 MB")
    z = zipfile.ZipFile(path)
    names = z.namelist()
    for n in names:
        if ".." in n or n.startswith("/"):
            problems.append("path information in %s" % n)
        if ".pyc" in n:
            problems.append("compiled file %s" % n)
        if {"__MACOSX", ".git", "__pycache__"} & set(n.split("/")):
            problems.append("forbidden folder in %s" % n)
    if z.testzip() is not None:
        problems.append("bad zip member %s" % z.testzip())
    tops = {n.split("/")[0] for n in names}
    if len(tops) != 1:
        return problems + ["several top folders: %s" % sorted(tops)]
    (top,) = tops
    if not re.match(r"^[A-Za-z][A-Za-z0-9-_]+$", top):
        problems.append("top folder name %r" % top)
    for required in ("__init__.py", "metadata.txt", "LICENSE"):
        if "%s/%s" % (top, required) not in names:
            problems.append("no %s" % required)
    cfg = configparser.ConfigParser()
    cfg.optionxform = str
    cfg.read_string(z.read(top + "/metadata.txt").decode("utf-8"))
    meta = dict(cfg["general"])
    for key in (
        "name",
        "description",
        "version",
        "qgisMinimumVersion",
        "author",
        "email",
        "about",
        "tracker",
        "repository",
    ):
        if not meta.get(key, "").strip():
            problems.append("metadata %s missing" % key)
    placeholders = (("tracker", "http://bugs"), ("repository", "http://repo"), ("homepage", "http://homepage"))
    for key, placeholder in placeholders:
        url = urlparse(meta.get(key, ""))
        if meta.get(key) == placeholder or not (url.scheme and url.netloc):
            problems.append("metadata %s is not a URL" % key)
    if "/" in meta.get("author", ""):
        problems.append("author name contains a slash")
    if "%s/%s" % (top, meta.get("icon", "").lstrip("./")) not in names:
        problems.append("icon %s not in the zip" % meta.get("icon"))
    for flag in ("experimental", "deprecated", "server"):
        if flag in meta and meta[flag].lower() not in ("true", "false", "1", "0"):
            problems.append("metadata %s is not a boolean" % flag)
    return problems


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs a git checkout")
def test_package_passes_the_plugin_repository_rules(tmp_path):
    out = (
        subprocess.run(
            ["bash", str(ROOT / "scripts" / "package.sh"), str(tmp_path)],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    path = ROOT / out if not out.startswith("/") else Path(out)
    assert path.name == "subsidence_toolkit-%s.zip" % _version()
    assert plugin_repository_problems(path) == []


def test_repository_rules_catch_what_the_repository_rejects(tmp_path):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("subsidence_toolkit/__init__.py", "")
        z.writestr("subsidence_toolkit/core/__pycache__/x.cpython-311.pyc", b"")
        z.writestr("subsidence_toolkit/metadata.txt", "[general]\nname=x\ntracker=http://bugs\n")
    problems = plugin_repository_problems(bad)
    for expected in (
        "compiled file",
        "forbidden folder",
        "no LICENSE",
        "metadata about missing",
        "metadata tracker is not a URL",
        "metadata repository missing",
    ):
        assert any(p.startswith(expected) for p in problems), (expected, problems)


def _version():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "metadata.txt")
    return cfg["general"]["version"]


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs a git checkout")
def test_zip_layout(tmp_path):
    out = tmp_path / "plugin.zip"
    subprocess.run(
        ["git", "archive", "--format=zip", "--prefix=subsidence_toolkit/", "-o", str(out), "HEAD"], cwd=ROOT, check=True
    )
    names = zipfile.ZipFile(out).namelist()
    assert {n.split("/")[0] for n in names} == {"subsidence_toolkit"}
    for required in (
        "metadata.txt",
        "__init__.py",
        "plugin.py",
        "processing_provider/provider.py",
        "core/io/rasters.py",
        "ui/icons/subsidence.svg",
    ):
        assert "subsidence_toolkit/" + required in names, required
    assert not [
        n
        for n in names
        if n.startswith(
            (
                "subsidence_toolkit/tests/",
                "subsidence_toolkit/.ci/",
                "subsidence_toolkit/benchmarks/",
                "subsidence_toolkit/demo/",
            )
        )
    ]


def test_core_has_no_qgis_imports():
    import re

    bad = [
        str(p)
        for p in (ROOT / "core").rglob("*.py")
        if re.search(r"^\s*(from|import)\s+(qgis|PyQt5|processing)\b", p.read_text(), re.M)
    ]
    assert bad == []
