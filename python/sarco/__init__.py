"""libsarco from Python: numpy in, numpy out, exceptions carrying the library's message.

    import sarco
    with sarco.Model("unetr.safetensors", backend="cpu") as m:
        y = m.forward(x)            # x: (N, C, D, H, W) float array, PyTorch layout

Convert PyTorch checkpoints with `python3 -m sarco.convert --help`.
"""
import ctypes
import json

import numpy as np

from ._lib import Context, SarcoError, _Closing, check, lib

__all__ = ["Model", "Context", "SarcoError", "version", "version_number"]

# Functions that live in submodules, imported on first use (PEP 562) so that `import sarco` stays
# cheap and works without the shared library (sarco.convert needs numpy only). name -> module.
_LAZY = {"evaluate": "metrics", "measure": "metrics", "edt": "metrics", "measure_ultrasound": "metrics",
         "load_image": "pipeline", "save_labels": "pipeline", "Image": "pipeline",
         "load_picture": "picture", "Picture": "picture", "batch": "batch",
         "overlay": "report", "overlay_color": "report", "write_png": "report",
         "report_html": "report", "write_report": "report",
         "diagnose": "clinical", "rules_list": "clinical", "rules_get": "clinical", "l3": "clinical"}


def __getattr__(name):
    import importlib
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        if name == _LAZY[name]:
            globals()[name] = value  # sarco.batch: the function, not its module (which import set)
        return value
    if name == "stats":
        return importlib.import_module(".stats", __name__)
    raise AttributeError(f"module 'sarco' has no attribute {name!r}")


def version():
    """The library's version string, e.g. "0.1.0"."""
    return lib().sarco_version_string().decode()


def version_number():
    """MAJOR*10000 + MINOR*100 + PATCH of the loaded library."""
    return int(lib().sarco_version_number())


def _shape_arg(shape):
    return (ctypes.c_int64 * len(shape))(*[int(s) for s in shape])


class Model(_Closing):
    """A libsarco model file loaded on a backend.

    Model(path, backend="cpu", threads=0, precision="fp32") creates its own context ("auto", "cpu" or
    "cuda"; precision "fp32", or "bf16" on CPUs with AVX512-BF16/AMX, "tf32"/"fp16" on CUDA); pass
    context=sarco.Context(...) to share one between models. Use as a context manager or call
    close(); the model is always freed before the context it was loaded on."""

    def __init__(self, path, backend="cpu", threads=0, context=None, precision="fp32"):
        self._h = None
        self._ctx = None
        own = context is None
        ctx = Context(backend=backend, threads=threads, precision=precision) if own else context
        ctx.acquire()
        self._ctx = ctx
        if own:
            ctx.close()  # freed for real when this model releases it
        h = ctypes.c_void_p()
        try:
            with ctx.lock:
                check(lib().sarco_model_load(ctx.handle, str(path).encode(), ctypes.byref(h)), ctx)
        except BaseException:
            self._ctx = None
            ctx.release()
            raise
        self._h = h
        self.path = str(path)
        self.config = json.loads(lib().sarco_model_config_json(h).decode("utf-8"))
        self.arch = lib().sarco_model_arch(h).decode()

    @property
    def backend(self):
        """"cpu" or "cuda"."""
        return self._alive().backend

    @property
    def backend_detail(self):
        """Which backend the model runs on and why (Context.backend_detail)."""
        return self._alive().backend_detail

    def _alive(self):
        if self._h is None:
            raise ValueError("the model is closed")
        return self._ctx

    def output_shape(self, in_shape):
        """The network's output shape for an input shape (N, C, [D,] H, W)."""
        ctx = self._alive()
        in_shape = tuple(int(s) for s in in_shape)
        out = (ctypes.c_int64 * max(len(in_shape), 1))()
        with ctx.lock:
            check(lib().sarco_model_output_shape(ctx.handle, self._h, len(in_shape), _shape_arg(in_shape), out), ctx)
        return tuple(int(v) for v in out[: len(in_shape)])

    @property
    def folds(self):
        """The number of trainings the file holds (nnU-Net folds; 1 without sarco.config "folds")."""
        self._alive()
        return int(lib().sarco_model_fold_count(self._h))

    def forward(self, x, fold=0):
        """Runs the raw network (fold `fold` of a multi-fold file) on x, a (N, C, H, W) or
        (N, C, D, H, W) array in PyTorch layout (any float or integer dtype, any strides); returns
        float32 in the same layout."""
        ctx = self._alive()
        if isinstance(fold, bool) or not isinstance(fold, (int, np.integer)):
            raise TypeError(f"forward: fold must be an integer, not {fold!r}")
        x = np.asarray(x)
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise TypeError(f"forward: need a real numeric array, got dtype {x.dtype}")
        if x.ndim not in (4, 5):
            raise ValueError(f"forward: need a 4-D (N, C, H, W) or 5-D (N, C, D, H, W) array with the batch "
                             f"dimension, got shape {x.shape}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        oshape = self.output_shape(x.shape)
        y = np.empty(oshape, dtype=np.float32)
        fp = ctypes.POINTER(ctypes.c_float)
        with ctx.lock:
            st = lib().sarco_model_forward_fold(ctx.handle, self._h, int(fold), x.ndim, _shape_arg(x.shape),
                                                x.ctypes.data_as(fp), y.ctypes.data_as(fp), y.size)
            check(st, ctx)
        return y

    __call__ = forward

    def sliding_window(self, x, overlap=0.25, mode="constant", sigma_scale=0.125, roi=None, sw_batch_size=None):
        """MONAI sliding_window_inference with the model's roi on a raw network input (N, C, ...)."""
        from . import pipeline
        return pipeline.sliding_window(self, x, overlap, mode, sigma_scale, roi, sw_batch_size)

    def segment(self, image, **kw):
        """Preprocess, run the sliding window and argmax; labels on the input image's grid."""
        from . import pipeline
        return pipeline.segment(self, image, **kw)

    def volumes(self, image, labels, height_m=None):
        """Per-label and per-group volumes and HU statistics of a segmentation of image."""
        from . import pipeline
        return pipeline.volumes(self, image, labels, height_m=height_m)

    def classify(self, image_or_array, tabular=None):
        """Probabilities of a picture (path or sarco.Picture, preprocessed as the config says) or a
        prepared (1, C, H, W) array: dict probability, per_fold, fold_sd, logits, predicted, imputed."""
        from . import classify
        return classify.classify(self, image_or_array, tabular)

    def gradcam(self, image_or_array, target=None, tabular=None):
        """Grad-CAM map float32 (H, W) in [0, 1] on the input's grid (docs/classifiers.md)."""
        from . import classify
        return classify.gradcam(self, image_or_array, target, tabular)

    def preprocess(self, image):
        """The config's classifier preprocessing of a picture -> float32 (1, C, H, W)."""
        from . import classify
        return classify.preprocess(self, image)

    def close(self):
        h, self._h = self._h, None
        ctx, self._ctx = self._ctx, None
        if h is not None:
            lib().sarco_model_free(h)
        if ctx is not None:
            ctx.release()

    def __repr__(self):
        state = "closed" if self._h is None else self.backend
        return f"<sarco.Model {self.arch if self._h is not None else ''} {self.path!r} ({state})>"
