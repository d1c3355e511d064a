"""Reads files written by torch.save (the zip format of torch >= 1.6) without torch.

The pickle inside is read by a restricted Unpickler: it resolves only the few globals a
state_dict or a training checkpoint needs (OrderedDict, the tensor rebuild functions, the typed
storage classes, torch.device/torch.Size and numpy scalars, each mapped to a harmless stand-in
of our own) and refuses every other global, so no code named by the file ever runs.
Tensors come back as C-contiguous numpy arrays (bfloat16 as safetensors.BFloat16Array).
"""
import collections
import io
import pickle
import zipfile

import numpy as np

from .safetensors import BFloat16Array

__all__ = ["TorchFileError", "load"]


class TorchFileError(ValueError):
    """The file is not a torch.save zip we read, or its pickle asks for something not allowed."""


# torch.<Name>Storage -> numpy dtype (little-endian; big-endian files are swapped on read)
_STORAGES = {
    "DoubleStorage": "<f8", "FloatStorage": "<f4", "HalfStorage": "<f2", "BFloat16Storage": "<u2",
    "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "?", "UntypedStorage": "u1",
}
_MAX_INFLATE = 1000  # a compressed zip entry may inflate at most this many times (plus 1 MiB)


class _StorageType:
    def __init__(self, name):
        self.name = name
        self.dtype = np.dtype(_STORAGES[name])
        self.bf16 = name == "BFloat16Storage"


class _Storage:
    """A storage read from data/<key>: a flat array of the storage's dtype."""

    def __init__(self, array, bf16):
        self.array = array
        self.bf16 = bf16


class Device(str):
    """Stand-in for torch.device: the device text, e.g. "cuda:0"."""


def _device(kind, index=None):
    if not isinstance(kind, str) or (index is not None and not isinstance(index, int)):
        raise TorchFileError("torch.device with unexpected arguments")
    return Device(kind if index is None else f"{kind}:{index}")


def _size(dims=()):
    return tuple(int(d) for d in dims)


def _check_dims(what, dims):
    if not isinstance(dims, (tuple, list)) or not all(isinstance(d, int) and not isinstance(d, bool) for d in dims):
        raise TorchFileError(f"tensor {what} is not a tuple of integers: {dims!r}")
    if any(d < 0 for d in dims):
        raise TorchFileError(f"tensor {what} has a negative entry: {dims!r}")
    return tuple(dims)


def _rebuild_tensor(storage, storage_offset, size, stride, *_rest):
    if not isinstance(storage, _Storage):
        raise TorchFileError("tensor rebuilt from something that is not a storage")
    if not isinstance(storage_offset, int) or storage_offset < 0:
        raise TorchFileError(f"bad storage offset {storage_offset!r}")
    size = _check_dims("size", size)
    stride = _check_dims("stride", stride)
    if len(size) != len(stride):
        raise TorchFileError(f"tensor size {size} and stride {stride} differ in rank")
    flat = storage.array
    if 0 in size:
        out = np.empty(size, dtype=flat.dtype)
    else:
        last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= flat.size:  # as_strided would read outside the storage: refuse
            raise TorchFileError(f"tensor of size {size}, stride {stride}, offset {storage_offset} "
                                 f"reaches element {last} of a storage of {flat.size}")
        item = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(flat[storage_offset:], shape=size,
                                               strides=[s * item for s in stride], writeable=False)
        out = np.array(view, order="C", copy=True)
    return BFloat16Array.from_bits(out) if storage.bf16 else out


def _rebuild_parameter(data, *_rest):
    if not isinstance(data, np.ndarray):
        raise TorchFileError("parameter rebuilt from something that is not a tensor")
    return data


# numpy scalars (e.g. np.float64 in a training log) pickle as numpy.dtype + multiarray.scalar
_SAFE_NP_DTYPES = {"f8", "f4", "f2", "i8", "i4", "i2", "i1", "u8", "u4", "u2", "u1", "b1"}


def _np_dtype(name, align=False, copy=False):
    if name not in _SAFE_NP_DTYPES:
        raise TorchFileError(f"numpy dtype {name!r} is not allowed")
    # always a private copy: the pickle then __setstate__s it (byte order), never numpy's singleton
    return np.dtype(name, align=False, copy=True)


def _np_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or not isinstance(data, bytes):
        raise TorchFileError("numpy scalar with unexpected arguments")
    clean = np.dtype(dtype.str)  # rebuilt from its text, so nothing but kind, size and byte order survives
    if clean.kind not in "fiub" or len(data) != clean.itemsize:
        raise TorchFileError(f"numpy scalar of dtype {dtype.str} is not allowed")
    return np.frombuffer(data, dtype=clean)[0]


def _codecs_encode(text, encoding="utf-8"):
    # protocol-2 pickles store bytes as _codecs.encode(str, "latin1")
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise TorchFileError("_codecs.encode with unexpected arguments")
    return text.encode("latin1")


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch", "device"): _device,
    ("torch", "Size"): _size,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("_codecs", "encode"): _codecs_encode,
    ("numpy", "dtype"): _np_dtype,
    ("numpy.core.multiarray", "scalar"): _np_scalar,
    ("numpy._core.multiarray", "scalar"): _np_scalar,
}
_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}  # protocol-2 pickles use these


class _Unpickler(pickle.Unpickler):
    def __init__(self, data, zf, prefix, big_endian):
        super().__init__(io.BytesIO(data))
        self._zf = zf
        self._prefix = prefix
        self._swap = big_endian
        self._storages = {}

    def find_class(self, module, name):
        module = _PY2_MODULES.get(module, module)
        if module == "torch" and name in _STORAGES:
            return _StorageType(name)
        f = _ALLOWED.get((module, name))
        if f is None:
            raise TorchFileError(f"the pickle refers to {module}.{name}, which a state_dict never needs; "
                                 "refusing to load it (only tensors, dicts and plain values are allowed)")
        return f

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise TorchFileError(f"unexpected persistent id {pid!r:.80}")
        _, stype, key, _location, numel = pid
        if not isinstance(stype, _StorageType) or not isinstance(key, str) or not isinstance(numel, int) \
                or numel < 0:
            raise TorchFileError(f"malformed storage reference {pid!r:.80}")
        if key in self._storages:  # two tensors sharing one storage
            st = self._storages[key]
            if st.array.dtype != stype.dtype:
                raise TorchFileError(f"storage {key} is used with two dtypes")
            return st
        name = f"{self._prefix}data/{key}"
        try:
            info = self._zf.getinfo(name)
        except KeyError:
            raise TorchFileError(f"storage {key}: no entry {name} in the archive") from None
        nbytes = numel * stype.dtype.itemsize
        if info.file_size < nbytes:
            raise TorchFileError(f"storage {key}: entry holds {info.file_size} bytes, {numel} elements of "
                                 f"{stype.name} need {nbytes}")
        if info.compress_type != zipfile.ZIP_STORED and info.file_size > _MAX_INFLATE * info.compress_size + (1 << 20):
            raise TorchFileError(f"storage {key}: compressed entry would inflate to {info.file_size} bytes")
        with self._zf.open(info) as f:
            raw = f.read(nbytes)
        if len(raw) != nbytes:
            raise TorchFileError(f"storage {key}: truncated ({len(raw)} of {nbytes} bytes)")
        arr = np.frombuffer(raw, dtype=stype.dtype)
        if self._swap and arr.dtype.itemsize > 1:
            arr = arr.byteswap()
        st = _Storage(arr, stype.bf16)
        self._storages[key] = st
        return st


def _record_prefix(zf, path):
    """The archive's top folder: every record is <folder>/data.pkl, <folder>/data/<key>, ..."""
    pkls = [n for n in zf.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
    if len(pkls) != 1:
        if any(n.endswith("constants.pkl") for n in zf.namelist()):
            raise TorchFileError(f"{path}: a TorchScript archive (torch.jit.save), not a torch.save state_dict")
        raise TorchFileError(f"{path}: expected one <folder>/data.pkl in the zip, found {len(pkls)}")
    return pkls[0][: -len("data.pkl")]


def load(path):
    """Reads a torch.save file and returns what was saved, with tensors as numpy arrays.
    Raises TorchFileError for anything that is not plain data (and for the legacy format)."""
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        with open(path, "rb") as f:
            head = f.read(2)
        if head[:1] == b"\x80":
            raise TorchFileError(f"{path}: legacy torch.save format (before torch 1.6, or "
                                 "_use_new_zipfile_serialization=False); re-save it with a recent torch "
                                 "or install torch to convert it") from None
        raise TorchFileError(f"{path}: not a torch.save file (not a zip archive)") from None
    with zf:
        prefix = _record_prefix(zf, path)
        big = False
        try:
            order = zf.read(prefix + "byteorder").decode("ascii", "replace").strip()
            if order not in ("little", "big"):
                raise TorchFileError(f"{path}: byteorder record says {order!r}")
            big = order == "big"
        except KeyError:
            pass  # files before torch 1.11 have no byteorder record: little-endian
        data = zf.read(prefix + "data.pkl")
        try:
            return _Unpickler(data, zf, prefix, big).load()
        except TorchFileError as e:
            raise TorchFileError(f"{path}: {e}") from None
        except (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError, IndexError,
                KeyError, RecursionError) as e:
            raise TorchFileError(f"{path}: malformed pickle ({type(e).__name__}: {e})") from None
