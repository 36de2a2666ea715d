"""Run the plugin's algorithms headless through ``qgis_process`` (used by the demo and the headless tests).

:func:`find_qgis_process` picks the first command that answers ``--version``: the ``qgis_process``
wrapper where it works (Debian 13 and later, Windows, macOS), else the binary ``qgis_process.bin``
(Debian 12's wrapper is broken: ``Command --noversioncheck not known!``); ``$QGIS_PROCESS`` overrides.
It runs with ``QT_QPA_PLATFORM=offscreen``, a private HOME (QGIS profile) and ``QGIS_PLUGINPATH``
pointing at a folder that holds a ``subsidence_toolkit`` link to this checkout. The plugin is enabled
once per profile.
"""

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = "subsidence_toolkit"


CANDIDATES = (
    "qgis_process",  # Debian >= 13, Ubuntu, conda, OSGeo4W shells
    "qgis_process.bin",
    "/usr/bin/qgis_process.bin",  # Debian 12: the binary behind the broken wrapper
    "/usr/lib/qgis/qgis_process.bin",
    "qgis_process-qgis.bat",
    "qgis_process-qgis-ltr.bat",  # OSGeo4W on Windows
    "/Applications/QGIS.app/Contents/MacOS/bin/qgis_process",
    "/Applications/QGIS-LTR.app/Contents/MacOS/bin/qgis_process",
)
_FOUND = []


def _answers(exe):
    """True if ``exe --version`` runs and names QGIS (a broken wrapper exits with an error)."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    try:
        out = subprocess.run([exe, "--version"], env=env, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and "QGIS" in out.stdout + out.stderr


def find_qgis_process():
    """The qgis_process command that works on this machine (checked once), or None."""
    if not _FOUND:
        names = [os.environ["QGIS_PROCESS"]] if os.environ.get("QGIS_PROCESS") else list(CANDIDATES)
        found = None
        for name in names:
            p = shutil.which(name) or (name if os.path.isfile(name) else None)
            if p and _answers(p):
                found = p
                break
        _FOUND.append(found)
    return _FOUND[0]


class QgisProcess:
    """A qgis_process session with the plugin enabled in a throw-away profile."""

    def __init__(self, workdir=None, exe=None):
        self.exe = exe or find_qgis_process()
        if not self.exe:
            raise RuntimeError("no working qgis_process found: install QGIS (apt-get install qgis) or set QGIS_PROCESS")
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="subsidence_qgis_"))
        self.home = self.workdir / "home"
        self.plugins = self.workdir / "plugins"
        self.home.mkdir(parents=True, exist_ok=True)
        self.plugins.mkdir(parents=True, exist_ok=True)
        link = self.plugins / PLUGIN
        if link.is_symlink() and os.path.realpath(link) != os.path.realpath(ROOT):
            link.unlink()  # left by another checkout (or dangling): never run someone else's code
        if not link.exists():
            link.symlink_to(ROOT, target_is_directory=True)
        runtime = self.workdir / "runtime"
        runtime.mkdir(mode=0o700, exist_ok=True)
        os.chmod(runtime, 0o700)
        self.env = dict(
            os.environ,
            HOME=str(self.home),
            QGIS_PLUGINPATH=str(self.plugins),
            QT_QPA_PLATFORM="offscreen",
            XDG_RUNTIME_DIR=str(runtime),
        )
        self.env.pop("QGIS_CUSTOM_CONFIG_PATH", None)
        out = self.call(["plugins", "enable", PLUGIN])
        if out.returncode != 0 and "already enabled" not in out.stdout + out.stderr:
            raise RuntimeError("qgis_process plugins enable failed:\n%s\n%s" % (out.stdout, out.stderr))

    def call(self, args, timeout=1800):
        return subprocess.run([self.exe] + list(args), env=self.env, capture_output=True, text=True, timeout=timeout)

    @staticmethod
    def arguments(params):
        """``KEY=VALUE`` arguments; list values repeat the key (qgis_process 3.22 syntax)."""
        args = []
        for k, v in params.items():
            if v is None:
                continue
            values = v if isinstance(v, (list, tuple)) else [v]
            for item in values:
                if isinstance(item, bool):
                    item = "true" if item else "false"
                args.append("%s=%s" % (k, item))
        return args

    def run(self, alg, params, check=True):
        """Run ``alg`` with ``params``; returns the parsed ``--json`` output (``results`` holds the outputs)."""
        proc = self.call(["--json", "run", alg, "--"] + self.arguments(params))
        data = None
        start = proc.stdout.find("{")
        if start >= 0:
            try:
                data = json.loads(proc.stdout[start:])
            except ValueError:
                data = None
        if check and (proc.returncode != 0 or data is None):
            raise RuntimeError(
                "qgis_process run %s failed (exit %d):\n%s\n%s"
                % (alg, proc.returncode, proc.stdout[-4000:], proc.stderr[-4000:])
            )
        return (
            data if data is not None else {"returncode": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr}
        )
