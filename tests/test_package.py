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


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs a git checkout")
def test_zip_layout(tmp_path):
    out = tmp_path / "plugin.zip"
    subprocess.run(["git", "archive", "--format=zip", "--prefix=subsidence_toolkit/", "-o", str(out), "HEAD"],
                   cwd=ROOT, check=True)
    names = zipfile.ZipFile(out).namelist()
    assert {n.split("/")[0] for n in names} == {"subsidence_toolkit"}
    for required in ("metadata.txt", "__init__.py", "plugin.py", "processing_provider/provider.py",
                     "core/io/rasters.py", "ui/icons/subsidence.svg"):
        assert "subsidence_toolkit/" + required in names, required
    assert not [n for n in names if n.startswith(("subsidence_toolkit/tests/", "subsidence_toolkit/.ci/",
                                                   "subsidence_toolkit/benchmarks/", "subsidence_toolkit/demo/"))]


def test_core_has_no_qgis_imports():
    import re

    bad = [str(p) for p in (ROOT / "core").rglob("*.py")
           if re.search(r"^\s*(from|import)\s+(qgis|PyQt5|processing)\b", p.read_text(), re.M)]
    assert bad == []
