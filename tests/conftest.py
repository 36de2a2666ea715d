"""Test set-up shared by every test.

* Registers the repository root as the package ``subsidence_toolkit`` (the name
  the plugin has when installed), so tests import ``subsidence_toolkit.core...``
  and the plugin's relative imports work. tests/ has no ``__init__.py`` on purpose.
* ``qgis_app``: one offscreen QgsApplication per session with the Processing
  framework initialised and our provider registered. Core tests never request
  it and run without QGIS.
"""

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = "subsidence_toolkit"

if PKG not in sys.modules:
    spec = importlib.util.spec_from_file_location(PKG, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PKG] = module
    spec.loader.exec_module(module)

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def pytest_configure(config):
    # QGIS >= 3.38 marks API it drops in QGIS 4 with DeprecationWarning (so do numpy, pandas, GDAL):
    # any such warning raised from the plugin's own code fails the test on every QGIS we test.
    config.addinivalue_line("filterwarnings", "error::DeprecationWarning:subsidence_toolkit")


@pytest.fixture(scope="session")
def qgis_app(tmp_path_factory):
    """An offscreen QgsApplication with Processing and the Subsidence provider."""
    home = tmp_path_factory.mktemp("qgis_home")
    os.environ.setdefault("QGIS_CUSTOM_CONFIG_PATH", str(home))
    qgis_core = pytest.importorskip("qgis.core")
    from qgis.core import QgsApplication

    if "/usr/share/qgis/python/plugins" not in sys.path:
        sys.path.append("/usr/share/qgis/python/plugins")
    app = QgsApplication.instance()
    if app is None:
        QgsApplication.setPrefixPath("/usr", True)
        app = QgsApplication([], False)
        app.initQgis()
    from processing.core.Processing import Processing

    Processing.initialize()
    from subsidence_toolkit.processing_provider.provider import SubsidenceProvider

    registry = QgsApplication.processingRegistry()
    provider = registry.providerById("subsidence")
    if provider is None:
        provider = SubsidenceProvider()
        registry.addProvider(provider)
    yield app
    del qgis_core


@pytest.fixture
def run_alg(qgis_app):
    """``run_alg('resampletimeseries', {...})`` -> results dict, via processing.run."""
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback

    def _run(name, params, feedback=None, context=None):
        alg = name if ":" in name else "subsidence:" + name
        return processing.run(
            alg, params, feedback=feedback or QgsProcessingFeedback(), context=context or QgsProcessingContext()
        )

    return _run


@pytest.fixture(scope="module")
def dask_cluster():
    """A 2-worker dask LocalCluster on loopback, no dashboard (one per test module: some tests kill a worker)."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        yield cluster


@pytest.fixture
def worker_killing_feedback(dask_cluster):
    """A QgsProcessingFeedback that SIGKILLs one of ``dask_cluster``'s two workers at the first progress
    report, i.e. while the run's first blocks are on the workers (``.killed`` says it happened)."""
    import signal

    from distributed import Client
    from qgis.core import QgsProcessingFeedback

    with Client(dask_cluster.scheduler_address, set_as_default=False) as client:
        pids = list(client.run(os.getpid).values())
    assert len(pids) == 2

    class KillAtFirstBlock(QgsProcessingFeedback):
        killed = False

        def setProgress(self, p):
            if p > 0 and not self.killed:
                self.killed = True
                os.kill(pids[0], signal.SIGKILL)
            super().setProgress(p)

    return KillAtFirstBlock()
