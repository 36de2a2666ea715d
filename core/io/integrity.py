"""Cheap checks that a data file is complete: a truncated copy or download is named before it is read
(GDAL and the netCDF library may return zeros or fill values for the missing part instead of failing).

* netCDF classic (CDF-1, CDF-2, CDF-5): the header declares where every variable's data start and how
  long they are; the file must reach the end of the last one.
* netCDF-4 / HDF5: the superblock declares the end-of-file address; the file must be that long.
"""

import os
import struct

NETCDF_EXTENSIONS = (".nc", ".nc4", ".cdf", ".netcdf", ".h5", ".he5", ".hdf5")
_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 4, 6: 8, 7: 1, 8: 2, 9: 4, 10: 8, 11: 8}
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


class _Reader:
    def __init__(self, data, version):
        self.data, self.pos, self.version = data, 0, version

    def take(self, n):
        if self.pos + n > len(self.data):
            raise EOFError
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def int32(self):
        return struct.unpack(">i", self.take(4))[0]

    def count(self):  # NON_NEG / nelems: 8 bytes in CDF-5
        return struct.unpack(">q", self.take(8))[0] if self.version == 5 else struct.unpack(">I", self.take(4))[0]

    def offset(self):
        return struct.unpack(">q", self.take(8))[0] if self.version in (2, 5) else struct.unpack(">I", self.take(4))[0]

    def name(self):
        n = self.count()
        self.take((n + 3) // 4 * 4)

    def skip_attributes(self):
        tag, n = self.int32(), self.count()
        if tag not in (0, 12):
            raise ValueError("bad attribute list")
        for _ in range(n):
            self.name()
            size = _TYPE_SIZE.get(self.int32(), 1) * self.count()
            self.take((size + 3) // 4 * 4)


def netcdf_classic_end(path, header_bytes=4 << 20):
    """The byte where the data of a netCDF classic file must end, or ``None`` (not classic / unreadable)."""
    with open(path, "rb") as f:
        data = f.read(header_bytes)
    if data[:3] != b"CDF" or len(data) < 8 or data[3] not in (1, 2, 5):
        return None
    r = _Reader(data, data[3])
    r.pos = 4
    try:
        numrecs = r.count()
        if numrecs in (0xFFFFFFFF, -1):  # streaming: the number of records is not known
            return None
        tag, ndims = r.int32(), r.count()
        dims = []
        for _ in range(ndims if tag == 10 else 0):
            r.name()
            dims.append(r.count())
        r.skip_attributes()
        tag, nvars = r.int32(), r.count()
        variables = []
        for _ in range(nvars if tag == 11 else 0):
            r.name()
            ids = [r.count() for _ in range(r.count())]
            r.skip_attributes()
            r.int32()
            vsize, begin = r.count(), r.offset()
            variables.append((bool(ids) and dims[ids[0]] == 0, vsize, begin))
    except (EOFError, ValueError, IndexError, struct.error):
        return None
    record_size = sum(v for rec, v, _ in variables if rec)
    end = 0
    for rec, vsize, begin in variables:
        if rec:
            end = max(end, begin + max(numrecs - 1, 0) * record_size + vsize if numrecs else begin)
        else:
            end = max(end, begin + vsize)
    return end


def hdf5_end(path):
    """The end-of-file address an HDF5 (netCDF-4) superblock declares, or ``None``."""
    with open(path, "rb") as f:
        head = f.read(256)
    if not head.startswith(_HDF5_SIGNATURE):
        return None  # (a user block before the superblock is not handled: no check)
    version = head[8]
    try:
        if version in (0, 1):
            size_offsets = head[13]
            pos = 24 + (4 if version == 1 else 0)  # base address follows the K values and flags
            fmt = {4: "<I", 8: "<Q"}[size_offsets]
            base = struct.unpack_from(fmt, head, pos)[0]
            eof = struct.unpack_from(fmt, head, pos + 2 * size_offsets)[0]
        elif version in (2, 3):
            size_offsets = head[9]
            fmt = {4: "<I", 8: "<Q"}[size_offsets]
            base = struct.unpack_from(fmt, head, 12)[0]
            eof = struct.unpack_from(fmt, head, 12 + 2 * size_offsets)[0]
        else:
            return None
    except (KeyError, struct.error):
        return None
    return base + eof


def file_damage(path):
    """One line saying why ``path`` is damaged (empty, truncated netCDF/HDF5), else ``None``."""
    path = str(path)
    try:
        size = os.path.getsize(path)
    except OSError:
        return None
    if size == 0:
        return "%s is an empty (0-byte) file" % path
    if not path.lower().endswith(NETCDF_EXTENSIONS):
        return None
    try:
        end = netcdf_classic_end(path)
        kind = "netCDF"
        if end is None:
            end, kind = hdf5_end(path), "netCDF-4/HDF5"
    except OSError:
        return None
    if end is not None and size < end:
        return "%s is truncated: the %s header declares %d bytes but the file has %d; re-download or re-create it" % (
            path,
            kind,
            end,
            size,
        )
    return None
