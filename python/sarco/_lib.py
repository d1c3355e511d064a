"""Finding and loading libsarco, the error type, and the context handle shared by every module.

Other modules reuse this:  `from ._lib import lib, check, Context, SarcoError`.
`lib()` returns the loaded ctypes.CDLL with the prototypes of the public header declared;
modules that wrap further functions declare their own prototypes with `declare()`.
"""
import ctypes
import ctypes.util
import logging
import os
import threading

__all__ = ["SarcoError", "lib", "check", "declare", "library_path", "Context", "BACKENDS"]

_log = logging.getLogger("sarco")
_log.addHandler(logging.NullHandler())  # silent unless the application configures logging

# sarco_status values (include/sarco/sarco.h); names come from sarco_status_string at run time.
OK = 0
ERR_INVALID_ARGUMENT = 1
ERR_BACKEND_UNAVAILABLE = 6

BACKENDS = {"auto": 0, "cpu": 1, "cuda": 2}
_BACKEND_NAMES = {1: "cpu", 2: "cuda"}
PRECISIONS = {"fp32": 0, "tf32": 1, "fp16": 2, "bf16": 3}


class SarcoError(RuntimeError):
    """A libsarco call failed. `.status` is the sarco_status number, `.status_name` its text
    (e.g. "bad format") and `.message` the library's explanation (sarco_last_error)."""

    def __init__(self, status, status_name, message):
        self.status = int(status)
        self.status_name = status_name
        self.message = message
        super().__init__(f"{status_name}: {message}" if message else status_name)


class _ContextOptions(ctypes.Structure):
    # must match sarco_context_options field by field; struct_size lets the library check it
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("backend", ctypes.c_int),
        ("device", ctypes.c_int),
        ("threads", ctypes.c_int),
        ("precision", ctypes.c_int),
        ("memory_limit", ctypes.c_size_t),
        ("log", ctypes.c_void_p),
        ("log_user", ctypes.c_void_p),
        ("log_level", ctypes.c_int),
    ]


_LOG_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p)
# A library ERROR message also comes back as a SarcoError, so it is only logged at DEBUG.
_LOG_LEVELS = {0: logging.DEBUG, 1: logging.WARNING, 2: logging.INFO, 3: logging.DEBUG}

_lock = threading.Lock()
_cdll = None


def library_path():
    """Where the shared library is looked for: $SARCO_LIBRARY, else the one bundled in an installed
    package (sarco/_bin/libsarco.so), else lib/libsarco.so of the source tree this package sits in
    (python/sarco -> ../../lib), else the system's search path."""
    env = os.environ.get("SARCO_LIBRARY")
    if env:
        return env
    here = os.path.dirname(os.path.abspath(__file__))
    bundled = os.path.join(here, "_bin", "libsarco.so")
    if os.path.exists(bundled):
        return bundled
    in_tree = os.path.normpath(os.path.join(here, "..", "..", "lib", "libsarco.so"))
    if os.path.exists(in_tree):
        return in_tree
    return ctypes.util.find_library("sarco")


def declare(name, restype, *argtypes):
    """Sets the prototype of one exported function and returns it."""
    f = getattr(lib(), name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


def _declare_core(so):
    c = ctypes
    P = c.c_void_p
    protos = {
        "sarco_version_number": (c.c_uint, []),
        "sarco_version_string": (c.c_char_p, []),
        "sarco_status_string": (c.c_char_p, [c.c_int]),
        "sarco_context_create_ex": (c.c_int, [c.POINTER(_ContextOptions), c.POINTER(P), c.c_char_p, c.c_size_t]),
        "sarco_context_free": (None, [P]),
        "sarco_last_error": (c.c_char_p, [P]),
        "sarco_context_backend": (c.c_int, [P]),
        "sarco_context_backend_detail": (c.c_char_p, [P]),
        "sarco_model_load": (c.c_int, [P, c.c_char_p, c.POINTER(P)]),
        "sarco_model_free": (None, [P]),
        "sarco_model_config_json": (c.c_char_p, [P]),
        "sarco_model_arch": (c.c_char_p, [P]),
        "sarco_model_output_shape": (c.c_int, [P, P, c.c_int, c.POINTER(c.c_int64), c.POINTER(c.c_int64)]),
        "sarco_model_forward": (c.c_int, [P, P, c.c_int, c.POINTER(c.c_int64), c.POINTER(c.c_float),
                                          c.POINTER(c.c_float), c.c_size_t]),
        "sarco_model_fold_count": (c.c_int, [P]),
        "sarco_model_forward_fold": (c.c_int, [P, P, c.c_int, c.c_int, c.POINTER(c.c_int64),
                                               c.POINTER(c.c_float), c.POINTER(c.c_float), c.c_size_t]),
    }
    for name, (res, args) in protos.items():
        f = getattr(so, name)
        f.restype = res
        f.argtypes = args


def lib():
    """The loaded libsarco (ctypes.CDLL), loaded on first use. Raises OSError naming the path tried."""
    global _cdll
    if _cdll is not None:
        return _cdll
    with _lock:
        if _cdll is None:
            path = library_path()
            if not path:
                raise OSError("libsarco not found: build it (make lib) or set SARCO_LIBRARY to the .so path")
            try:
                so = ctypes.CDLL(path)
            except OSError as e:
                raise OSError(f"cannot load libsarco from {path}: {e} (set SARCO_LIBRARY)") from e
            _declare_core(so)
            _cdll = so
    return _cdll


def _text(b):
    return b.decode("utf-8", "replace") if b else ""


def status_name(status):
    return _text(lib().sarco_status_string(int(status)))


def last_error(ctx_handle):
    return _text(lib().sarco_last_error(ctx_handle))


def check(status, ctx):
    """Raises SarcoError when status is not SARCO_OK. ctx is a Context, a raw handle or None;
    its sarco_last_error becomes the message."""
    if status == OK:
        return
    handle = ctx.handle if isinstance(ctx, Context) else ctx
    msg = last_error(handle) if handle else ""
    raise SarcoError(status, status_name(status), msg)


def _on_log(user, level, message):
    try:
        _log.log(_LOG_LEVELS.get(level, logging.DEBUG), "%s", _text(message))
    except Exception:  # never let an exception cross the C boundary
        pass


class _Closing:
    """`with` support and close-on-collection for handle owners that define close()."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class Context(_Closing):
    """A sarco_context: one backend, its threads and its error text.

    Calls through one Context are serialised with a lock (the error text is per context).
    The handle is freed only once close() was called AND every object that uses it (models)
    has released it, so a model never outlives its backend."""

    def __init__(self, backend="cpu", threads=0, device=0, precision="fp32", memory_limit=0):
        self.handle = None
        self.lock = threading.RLock()
        self._users = 0
        self._closing = False
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {sorted(BACKENDS)}, not {backend!r}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, not {precision!r}")
        if int(threads) < 0:
            raise ValueError(f"threads must be >= 0 (0 = all cores), not {threads}")
        so = lib()
        # Filled here rather than by sarco_context_options_init, which writes the library's own
        # sizeof: a newer library's larger struct must not overrun ours. struct_size tells it ours.
        opts = _ContextOptions()
        opts.struct_size = ctypes.sizeof(_ContextOptions)
        opts.backend = BACKENDS[backend]
        opts.threads = int(threads)
        opts.device = int(device)
        opts.precision = PRECISIONS[precision]
        opts.memory_limit = int(memory_limit)
        self._log_cb = _LOG_FN(_on_log)  # kept alive as long as the context
        opts.log = ctypes.cast(self._log_cb, ctypes.c_void_p)
        opts.log_level = 2  # INFO; the "sarco" logger filters further
        h = ctypes.c_void_p()
        msg = ctypes.create_string_buffer(1024)
        st = so.sarco_context_create_ex(ctypes.byref(opts), ctypes.byref(h), msg, len(msg))
        if st != OK:
            raise SarcoError(st, status_name(st), _text(msg.value))
        self.handle = h
        self._free = so.sarco_context_free

    @property
    def backend(self):
        """"cpu" or "cuda": what the context really runs on (never "auto")."""
        self._alive()
        return _BACKEND_NAMES.get(lib().sarco_context_backend(self.handle), "cpu")

    @property
    def backend_detail(self):
        """Which backend this context runs on and why, one line (sarco_context_backend_detail): for
        CUDA the plug-in, runtime, driver and device; for a CPU that AUTO chose, why not CUDA."""
        self._alive()
        return _text(lib().sarco_context_backend_detail(self.handle))

    @property
    def note(self):
        """The context's current message, e.g. why backend="auto" chose the CPU."""
        self._alive()
        return last_error(self.handle)

    def _alive(self):
        if self.handle is None:
            raise ValueError("the sarco context is closed")

    def acquire(self):
        """Marks one more user of the handle (a model); pair with release()."""
        with self.lock:
            self._alive()
            self._users += 1

    def release(self):
        with self.lock:
            self._users -= 1
            if self._closing and self._users <= 0:
                self._destroy()

    def close(self):
        with self.lock:
            self._closing = True
            if self._users <= 0:
                self._destroy()

    def _destroy(self):
        h, self.handle = self.handle, None
        if h is not None and h.value:
            self._free(h)
