"""A small safetensors writer and reader (numpy only).

Layout: 8-byte little-endian header length N, N bytes of JSON (padded with spaces so the data
starts 8-byte aligned), then each tensor's bytes, little-endian, C order, back to back in the
header's order. The writer is atomic: it writes a temporary file next to the target and renames
it over the target only once everything is on disk.
"""
import json
import os
import struct
import tempfile

import numpy as np

__all__ = ["BFloat16Array", "dtype_name", "write", "read"]


class BFloat16Array(np.ndarray):
    """bfloat16 values held as their raw uint16 bit patterns (numpy has no bfloat16).
    Make one with BFloat16Array.from_bits(uint16_array); to_float32() widens exactly."""

    @classmethod
    def from_bits(cls, bits):
        bits = np.asarray(bits)
        if bits.dtype != np.uint16:
            raise TypeError(f"bfloat16 bits must be uint16, not {bits.dtype}")
        return bits.view(cls)

    def bits(self):
        return self.view(np.ndarray)

    def to_float32(self):
        return (self.view(np.ndarray).astype(np.uint32) << 16).view(np.float32)


# numpy kind+itemsize -> safetensors dtype (the names libsarco's reader knows)
_NAMES = {
    ("f", 8): "F64", ("f", 4): "F32", ("f", 2): "F16",
    ("i", 8): "I64", ("i", 4): "I32", ("i", 2): "I16", ("i", 1): "I8",
    ("u", 1): "U8", ("b", 1): "BOOL",
}
_NUMPY = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
    "U8": "u1", "BOOL": "?", "BF16": "<u2",
}


def dtype_name(a):
    """The safetensors dtype of an array; ValueError for dtypes libsarco cannot read."""
    if isinstance(a, BFloat16Array):
        return "BF16"
    name = _NAMES.get((a.dtype.kind, a.dtype.itemsize))
    if name is None:
        raise ValueError(f"dtype {a.dtype} has no safetensors name libsarco reads "
                         f"(supported: {', '.join(sorted(_NUMPY))})")
    return name


def _le_bytes(a):
    """The array's bytes, little-endian, C order."""
    plain = a.view(np.ndarray) if isinstance(a, np.ndarray) else np.asarray(a)
    if plain.dtype.byteorder == ">" or (plain.dtype.byteorder == "=" and np.little_endian is False):
        plain = plain.astype(plain.dtype.newbyteorder("<"))
    return np.ascontiguousarray(plain).tobytes()


def _header(tensors, metadata):
    head = {}
    if metadata:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError(f"__metadata__ keys and values must be strings (key {k!r})")
        head["__metadata__"] = dict(metadata)
    offset = 0
    for name, a in tensors:
        if not isinstance(name, str) or not name or "\0" in name or name == "__metadata__":
            raise ValueError(f"bad tensor name {name!r}")
        if name in head:
            raise ValueError(f"duplicate tensor name {name!r}")
        nbytes = int(np.prod(a.shape, dtype=np.int64)) * a.dtype.itemsize
        head[name] = {"dtype": dtype_name(a), "shape": [int(s) for s in a.shape],
                      "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(head, separators=(",", ":"), allow_nan=False).encode("utf-8")
    text += b" " * (-len(text) % 8)  # 8 + N is then a multiple of 8
    return text


def _umask():
    try:  # Linux says it without changing it (os.umask would, for every thread)
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    m = os.umask(0o022)
    os.umask(m)
    return m


def write(path, tensors, metadata=None):
    """Writes tensors (a mapping or (name, array) pairs, kept in that order) and string metadata
    to path atomically: on any failure no file is left at path (an existing one is untouched)."""
    items = list(tensors.items() if hasattr(tensors, "items") else tensors)
    items = [(n, a if isinstance(a, np.ndarray) else np.asarray(a)) for n, a in items]
    head = _header(items, metadata)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            fd = None
            f.write(struct.pack("<Q", len(head)))
            f.write(head)
            for _, a in items:
                f.write(_le_bytes(a))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if fd is not None:
            os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read(path):
    """Reads a safetensors file: (dict name -> array, metadata dict). BF16 comes back as
    BFloat16Array. Checks the rules libsarco checks that matter for a round trip."""
    with open(path, "rb") as f:
        buf = f.read()
    if len(buf) < 8:
        raise ValueError(f"{path}: shorter than 8 bytes")
    (n,) = struct.unpack("<Q", buf[:8])
    if n > len(buf) - 8:
        raise ValueError(f"{path}: header length {n} runs past the end of the file")
    head = json.loads(buf[8:8 + n].decode("utf-8"))
    meta = head.pop("__metadata__", {}) or {}
    data = memoryview(buf)[8 + n:]
    out, spans = {}, []
    for name, info in head.items():
        b, e = info["data_offsets"]
        dt = np.dtype(_NUMPY[info["dtype"]])
        shape = tuple(info["shape"])
        if (e - b) != int(np.prod(shape, dtype=np.int64)) * dt.itemsize or e > len(data):
            raise ValueError(f"{path}: {name}: byte span does not match dtype and shape")
        a = np.frombuffer(data[b:e], dtype=dt).reshape(shape).copy()
        out[name] = BFloat16Array.from_bits(a) if info["dtype"] == "BF16" else a
        spans.append((b, e))
    spans.sort()
    pos = 0
    for b, e in spans:
        if b != pos:
            raise ValueError(f"{path}: data_offsets are not contiguous")
        pos = e
    if pos != len(data):
        raise ValueError(f"{path}: data section is {len(data)} bytes, tensors cover {pos}")
    return out, meta
