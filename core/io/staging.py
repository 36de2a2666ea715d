"""Staged (all-or-nothing) output files and the files an input specification refers to (no QGIS imports).

Every output of a run is first written to a hidden *staging* file beside its destination
(``.NAME.<id>.partial.EXT``; side-cars such as ``.dbf`` or ``.aux.xml`` share the prefix). Only when
the whole run has succeeded are all staged files moved onto their destinations; until then an
existing destination is never touched, and on any failure every staged file is removed
(:class:`StagedFiles`). While a run stages files in a folder, a hidden ``.subsidence-<id>.run`` file there
names them and the process writing them (:class:`RunMarker`); a later run into the same folder removes what a
run killed with ``kill -9`` (or the out-of-memory killer, or a power cut) left behind (:func:`remove_stale`).
The moves into place are journalled in that file first, so a run killed while it made them is undone
(:func:`recover_commit`).

:func:`source_files` turns whatever an input parameter holds (a path, a layer source with ``|``
options, ``NETCDF:"file":var``, ``GPKG:file:table``, ``/vsizip/archive.zip/inner.tif``, an OGR
``dbname='...'`` URI, wildcards, ``;``/newline separated lists) into the existing files it refers
to, and :func:`same_file` compares files by identity (hard links and symbolic links included), so
an output can be refused when it would overwrite an input.
"""

import glob
import json
import os
import re
import shutil
import socket
import uuid

STAGING_TAG = ".partial"

# files written beside a main file by the format (keyed by the main file's extension)
SIDECARS = {
    ".shp": (".shx", ".dbf", ".prj", ".cpg", ".qpj", ".qix", ".sbn", ".sbx", ".qmd"),
    ".gpkg": ("-wal", "-shm", "-journal"),
    ".sqlite": ("-wal", "-shm", "-journal"),
    ".csv": (".csvt", ".prj"),
    ".tab": (".dat", ".id", ".map"),
    ".ztd": (".ztd.rsc",),  # GACOS zenith delay: its header YYYYMMDD.ztd.rsc
}
RASTER_SIDECARS = (".aux.xml", ".ovr", ".msk")


def sidecar_paths(path):
    """``path`` and the side-car files a writer or GDAL may create beside it."""
    stem, ext = os.path.splitext(path)
    out = [path] + [path + s for s in RASTER_SIDECARS]
    for s in SIDECARS.get(ext.lower(), ()):
        out.append(stem + s if s.startswith(".") else path + s)
    return out


def file_key(path):
    """Identity of an existing file (device, inode), else its resolved path."""
    try:
        st = os.stat(path)
        return ("inode", st.st_dev, st.st_ino)
    except OSError:
        return ("path", os.path.realpath(path))


def same_file(a, b):
    return file_key(a) == file_key(b)


_DRIVER_PREFIX = re.compile(r"^([A-Za-z][A-Za-z0-9_]+):(.*)$")
_QUOTED = re.compile(r'^"([^"]+)"(?::.*)?$')
_VSI = re.compile(r"^(/vsi[a-z0-9_]+/)+")
_URI_KEY = re.compile(r"""(?:dbname|path)\s*=\s*(?:'([^']*)'|"([^"]*)"|(\S+))""")


def _existing_file_prefix(path):
    """The longest leading part of ``path`` that is an existing regular file (for /vsizip/a.zip/inner)."""
    p = path
    while p and p not in ("/", "."):
        if os.path.isfile(p):
            return p
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    return None


def _candidates(item):
    """Plain path candidates of one source specification (before globbing)."""
    item = item.strip().strip("'\"").strip()
    if not item:
        return []
    if item.startswith("file://"):
        item = item[7:]
    item = item.split("|")[0].strip()
    out = []
    m = _URI_KEY.search(item)
    if m and ("dbname" in item or "path=" in item):
        out.append(next(g for g in m.groups() if g is not None))
    m = _DRIVER_PREFIX.match(item)
    if m and not re.match(r"^[A-Za-z]:[\\/]", item):  # NETCDF:"f":var, GPKG:f:table (not C:\...)
        rest = m.group(2)
        q = _QUOTED.match(rest)
        if q:
            out.append(q.group(1))
        else:
            out.append(rest)
            if ":" in rest:
                out.append(rest.rsplit(":", 1)[0])
    out.append(item)
    return out


def source_files(spec):
    """Existing files an input specification refers to (see the module doc); never raises."""
    files = []
    if spec is None:
        return files
    for item in re.split(r"[;\n]", str(spec)):
        for cand in _candidates(item):
            cand = "/" + _VSI.sub("", cand).lstrip("/") if _VSI.match(cand) else cand
            paths = glob.glob(cand) if any(c in cand for c in "*?[") else [cand]
            for p in paths:
                f = p if os.path.isfile(p) else _existing_file_prefix(p) if p.startswith("/") else None
                if f and f not in files:
                    files.append(f)
    return files


def input_file_set(specs):
    """``{file_key: path}`` of every file the specifications refer to, with their existing side-cars."""
    keys = {}
    for spec in specs:
        for f in source_files(spec):
            for p in sidecar_paths(f):
                if os.path.exists(p):
                    keys.setdefault(file_key(p), p)
    return keys


def staging_path(final, tag=None, single_dot=False):
    """Hidden staging path beside ``final`` keeping its extension: ``dir/.NAME.<id>.partial.EXT``.
    ``single_dot``: ``dir/NAME-<id>-partial.EXT`` with no other dot (QGIS 3.22 picks the OGR driver of an
    ``ogr:dbname=...`` destination from everything after the first dot of the file name)."""
    d, f = os.path.split(os.path.abspath(final))
    stem, ext = os.path.splitext(f)
    tag = tag or uuid.uuid4().hex[:8]
    if single_dot:
        return os.path.join(d, "%s-%s-%s%s" % (stem.replace(".", "_"), tag, STAGING_TAG.strip("."), ext))
    return os.path.join(d, ".%s.%s%s%s" % (stem, tag, STAGING_TAG, ext))


STAGING_DIR = re.compile(r"^\.subsidence-[0-9a-f]+\.partial$")


def inside_staging_dir(path):
    """True when ``path`` lies in a staging folder of an enclosing transaction (a model's step writing one
    of the model's outputs): that transaction stages, checks and commits it."""
    parts = os.path.abspath(path).split(os.sep)
    return any(STAGING_DIR.match(p) for p in parts[:-1])


# ------------------------------------------------------------------------------------------ run markers
RUN_MARKER = re.compile(r"^\.subsidence-([0-9a-f]+)\.run$")
#: the names :func:`staging_path` and :class:`StagedFiles` give (8 hex digits: never a commit's backup of a
#: previous output, ``.NAME.backup-<id>.partial.EXT``, which holds the user's data)
_STAGED_NAME = re.compile(
    r"^(\..+\.[0-9a-f]{8}\.partial(\..*)?|.+-[0-9a-f]{8}-partial(\..*)?|\.subsidence-[0-9a-f]+\.partial)$"
)


def _boot_id():
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return None


def _start_time(pid):
    """The process's start time in clock ticks since boot (Linux), else None."""
    try:
        with open("/proc/%d/stat" % int(pid)) as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError, ValueError):
        return None


def _pid_alive(pid):
    try:
        os.kill(int(pid), 0)  # POSIX only: on Windows os.kill terminates the process
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def markers_supported():
    """Run markers need POSIX locks and process checks (not on Windows: stale files stay for the user)."""
    try:
        import fcntl  # noqa: F401
    except ImportError:
        return False
    return os.name == "posix"


class RunMarker:
    """``.subsidence-<id>.run`` in a folder where a live run stages files: the host, boot, process and start
    time of the run and the names of its staged files, with an exclusive ``flock`` held until the run ends
    (:meth:`close` removes it). The kernel releases the lock when the process dies, however it dies."""

    def __init__(self, folder):
        import fcntl

        self.path = os.path.join(folder, ".subsidence-%s.run" % uuid.uuid4().hex[:10])
        self.names = []
        self.commit = None  # the journal of the moves into place: {"phase": "moving" | "done", "moves": [...]}
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # a file system without locks: the process checks still hold
                pass
            self._write()
        except BaseException:  # e.g. a full disk: no marker, and no empty file left behind
            self.close()
            raise

    def add(self, name):
        self.names.append(name)
        self._write()

    def journal(self, phase, moves=None):
        """Record, on disk before they start (and again once they are all done), the moves into place that
        write into this folder: ``[staged, destination, backup or None, identity of the staged file]``. A run
        killed between the two records is undone by the next run into the folder (:func:`recover_commit`)."""
        if moves is not None:
            self.commit = {"phase": phase, "moves": moves}
        elif self.commit is not None:
            self.commit["phase"] = phase
        try:
            self._write(sync=True)
        except OSError:  # a full disk: keep the marker naming the staged files, without the journal
            self.commit = None
            try:
                self._write()
            except OSError:
                self.close()
            return False
        return True

    def _write(self, sync=False):
        pid = os.getpid()
        data = {
            "host": socket.gethostname(),
            "boot": _boot_id(),
            "pid": pid,
            "start": _start_time(pid),
            "staged": self.names,
        }
        if self.commit is not None:
            data["commit"] = self.commit
        text = json.dumps(data).encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, text, 0)
        if sync:
            os.fsync(self.fd)

    def close(self):
        if self.fd is None:
            return
        try:
            os.remove(self.path)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None


def _stale_marker(path):
    """The marker's content if the run that wrote it is over (its lock is free and, on this host, its process
    is gone, was another process with the same number, or ran before the last boot), else None."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # the run is alive
        except OSError:
            pass
        try:
            data = json.loads(os.pread(fd, 1 << 20, 0).decode())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("host") != socket.gethostname():
            return None  # another machine's run: cannot tell
        boot = _boot_id()
        if boot and data.get("boot") and data["boot"] != boot:
            return data
        pid = data.get("pid")
        if not isinstance(pid, int) or pid == os.getpid():
            return None
        if not _pid_alive(pid):
            return data
        start = data.get("start")
        return data if start and _start_time(pid) not in (None, start) else None
    finally:
        os.close(fd)


_BACKUP_NAME = re.compile(r"^\..+\.backup-[0-9a-f]{6}\.partial(\..*)?$")


def file_identity(path):
    """What stays the same when a file is renamed and changes when it is rewritten or replaced (a JSON list);
    None when there is no such file."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]


def _sync_folder(folder):
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _journal_moves(folder, commit):
    """The journal's moves that stay inside ``folder`` (a staged file beside the destination or in a hidden
    staging folder there; a backup of the form :meth:`StagedFiles.commit` names it), else nothing."""
    moves = commit.get("moves") if isinstance(commit, dict) else None
    if not isinstance(moves, list):
        return []
    folder = os.path.abspath(folder)
    valid = []
    for m in moves:
        if not (isinstance(m, list) and len(m) == 4):
            continue
        src, dst, backup, ident = m
        if not isinstance(dst, str) or os.path.dirname(os.path.abspath(dst)) != folder:
            continue
        if backup is not None and not (
            isinstance(backup, str)
            and os.path.dirname(os.path.abspath(backup)) == folder
            and _BACKUP_NAME.match(os.path.basename(backup))
        ):
            continue
        if src is not None:
            inside = os.path.dirname(os.path.abspath(src)) if isinstance(src, str) else None
            if inside != folder and not (
                inside and os.path.dirname(inside) == folder and STAGING_DIR.match(os.path.basename(inside))
            ):
                continue
        valid.append((src, os.path.abspath(dst), backup, ident))
    return valid


def recover_commit(folder, commit):
    """Undo, in ``folder``, the moves into place of a run killed while it made them (``commit`` from its
    marker), or finish one killed after it had made them all. Returns ``(restored, removed, kept)``:
    destinations given back their previous file, new outputs removed (there was no previous file), and hidden
    backups that could not be put back (the destination now holds a file that is not the run's) and are left
    for the user.

    A destination is removed only when it is the very file the run moved there (same identity, see
    :func:`file_identity`) and there is nothing to put back or its previous file is put back in the same
    rename; a previous file is put back only onto a free name or onto the run's own file. So a file the user
    wrote since is never touched, and no step loses both the previous and the new output."""
    restored, removed, kept = [], [], []
    phase = commit.get("phase") if isinstance(commit, dict) else None
    for src, dst, backup, ident in reversed(_journal_moves(folder, commit)):
        has_backup = backup is not None and os.path.lexists(backup)
        moved = src is not None and not os.path.lexists(src)
        ours = moved and ident is not None and file_identity(dst) == ident
        try:
            if phase == "done":  # every move was made: the previous files were to go
                if has_backup and (ours or src is None):
                    os.remove(backup)
                elif has_backup:
                    kept.append(backup)
                continue
            if ours and backup is None:
                os.remove(dst)  # a new output where there was none
                removed.append(dst)
            elif has_backup and (ours or not os.path.lexists(dst)):
                os.replace(backup, dst)  # the previous output back, over the run's own file if it got there
                restored.append(dst)
            elif has_backup:
                kept.append(backup)
        except OSError:
            if has_backup and os.path.lexists(backup):
                kept.append(backup)
    return restored, removed, kept


def remove_stale(folder, report=None):
    """Remove the staged files that runs killed without a chance to clean up left in ``folder`` (and their
    markers): only names a marker lists, of the form staging gives them. A run killed while it moved its
    outputs into place is first undone (:func:`recover_commit`); ``report`` (a dict) collects the
    destinations given back their previous file (``"restored"``), the new outputs removed (``"removed"``)
    and the backups left (``"kept"``).
    Returns the paths removed."""
    removed = []
    if not markers_supported():
        return removed
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for n in names:
        if not RUN_MARKER.match(n):
            continue
        marker = os.path.join(folder, n)
        data = _stale_marker(marker)
        if data is None:
            continue
        if data.get("commit") is not None:
            done = recover_commit(folder, data["commit"])
            if report is not None:
                for key, paths in zip(("restored", "removed", "kept"), done):
                    report.setdefault(key, []).extend(paths)
        staged = data.get("staged") if isinstance(data.get("staged"), list) else []
        for name in staged:
            if not isinstance(name, str) or os.sep in name or not _STAGED_NAME.match(name):
                continue
            p = os.path.join(folder, name)
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
            else:  # the staged file and what its writer had begun beside it (e.g. GDAL's own temporary)
                removed += remove_staged(p)
        try:
            os.remove(marker)
        except OSError:
            pass
    return removed


class StagedFiles:
    """A set of ``final <- staging`` moves done all together (:meth:`commit`) or not at all (:meth:`rollback`).

    Staged side-cars (``staging`` prefix + suffix, e.g. ``.x.1a2b.partial.dbf``) follow their main file
    (``x.dbf``); a stale ``final.aux.xml`` from a previous run is replaced or removed so it cannot
    describe the new file.

    ``staging_dir=True``: files are staged under their own names in a hidden folder beside their
    destinations (``.subsidence-<id>.partial/NAME``), so files that refer to each other by relative path
    (an HTML report linking another report) stay consistent when they are moved out.
    """

    def __init__(self, staging_dir=False):
        self.items = []  # (final, staging)
        self.directory = ".subsidence-%s.partial" % uuid.uuid4().hex[:10] if staging_dir else None
        self.folders = set()
        self.markers = {}  # destination folder -> RunMarker (None where one cannot be written)
        self.stale = []  # files of killed runs removed from the destination folders
        self.recovered = {}  # what undoing runs killed during their moves did: "restored", "removed", "kept"

    def add(self, final, single_dot=False):
        dest = os.path.dirname(os.path.abspath(final))
        if self.directory:
            folder = os.path.join(dest, self.directory)
            self._mark(dest, self.directory)
            os.makedirs(folder, exist_ok=True)
            self.folders.add(folder)
            staging = os.path.join(folder, os.path.basename(final))
        else:
            staging = staging_path(final, single_dot=single_dot)
            self._mark(dest, os.path.basename(staging))
        self.items.append((os.path.abspath(final), staging))
        return staging

    def _mark(self, folder, name):
        """Name ``name`` in this run's marker in ``folder`` (first: clean up after killed runs there)."""
        if folder not in self.markers:
            marker = None
            if markers_supported() and os.path.isdir(folder):
                self.stale += remove_stale(folder, self.recovered)
                try:
                    marker = RunMarker(folder)
                except OSError:  # a read-only folder: the run fails on its outputs anyway
                    marker = None
            self.markers[folder] = marker
        marker = self.markers[folder]
        if marker is not None and name not in marker.names:
            try:
                marker.add(name)
            except OSError:  # a full disk: the run goes on without its marker (and fails on its outputs)
                marker.close()
                self.markers[folder] = None

    def _close_markers(self):
        for marker in self.markers.values():
            if marker is not None:
                marker.close()
        self.markers = {}

    def _remove_folders(self):
        for folder in self.folders:
            shutil.rmtree(folder, ignore_errors=True)
        self.folders = set()

    def _moves(self, final, staging):
        d = os.path.dirname(staging)
        s_stem = os.path.splitext(os.path.basename(staging))[0]
        f_stem = os.path.splitext(os.path.basename(final))[0]
        moves = [(staging, final)]
        try:
            names = os.listdir(d)
        except OSError:
            names = []
        for n in sorted(names):
            p = os.path.join(d, n)
            if n.startswith(s_stem + ".") and p != staging:  # (not "gdi_report.csv" for "gdi.csv")
                moves.append((p, os.path.join(os.path.dirname(final), f_stem + n[len(s_stem) :])))
        aux = final + ".aux.xml"
        if os.path.exists(aux) and not any(dst == aux for _, dst in moves):
            moves.append((None, aux))  # stale side-car of the previous output: removed
        return moves

    def _plan(self):
        """Every move of the commit, in order: ``(staged or None, destination, backup name or None)``."""
        plan, sources = [], set()
        for final, staging in self.items:
            if not os.path.exists(staging):
                continue
            for src, dst in self._moves(final, staging):
                if src is not None and src in sources:
                    continue
                sources.add(src)
                backup = staging_path(dst, "backup-" + uuid.uuid4().hex[:6]) if os.path.lexists(dst) else None
                plan.append((src, dst, backup))
        return plan

    def _journal(self, phase, plan=None):
        """Write the moves into each destination folder's marker (see :meth:`RunMarker.journal`)."""
        for folder, marker in list(self.markers.items()):
            if marker is None:
                continue
            if phase == "done":
                _sync_folder(folder)  # the renames reach the disk before the record that they were made
            moves = None
            if plan is not None:
                moves = [
                    [src, dst, backup, file_identity(src) if src is not None else None]
                    for src, dst, backup in plan
                    if os.path.dirname(dst) == folder
                ]
            if not marker.journal(phase, moves) and marker.fd is None:
                self.markers[folder] = None

    def commit(self):
        """Move every staged file onto its destination; on a failure restore the previous files.

        The moves are journalled in each destination folder's marker first, so if the process is killed
        while it makes them (``kill -9``, a power cut) the next run into the folder puts the previous files
        back (:func:`recover_commit`)."""
        done = []  # (dst, backup or None)
        try:
            plan = self._plan()
            self._journal("moving", plan)
            for src, dst, backup in plan:
                if backup is not None and os.path.lexists(dst):
                    os.replace(dst, backup)
                else:
                    backup = None
                done.append((dst, backup))
                if src is not None:
                    os.replace(src, dst)
            self._journal("done")
        except BaseException:
            for dst, backup in reversed(done):
                try:
                    if backup is not None:
                        os.replace(backup, dst)
                    elif os.path.exists(dst):
                        os.remove(dst)
                except OSError:
                    pass
            self.rollback()
            raise
        for _, backup in done:
            if backup is not None:
                try:
                    os.remove(backup)
                except OSError:
                    pass
        self.items = []
        self._remove_folders()
        self._close_markers()

    def rollback(self):
        """Remove every staged file (and anything a writer created with the staging prefix)."""
        for _, staging in self.items:
            remove_staged(staging)
        self.items = []
        self._remove_folders()
        self._close_markers()


def remove_staged(staging):
    """Remove ``staging`` and every file beside it whose name starts with its stem or with ``.<its name>``;
    returns the paths removed."""
    d = os.path.dirname(staging)
    base = os.path.basename(staging)
    stem = os.path.splitext(base)[0]
    removed = []
    try:
        names = os.listdir(d)
    except OSError:
        return removed
    for n in names:
        if n.startswith(stem) or n.startswith("." + base):
            p = os.path.join(d, n)
            try:
                if os.path.isfile(p) or os.path.islink(p):
                    os.remove(p)
                    removed.append(p)
            except OSError:
                pass
    return removed
