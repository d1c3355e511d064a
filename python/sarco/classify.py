"""Image classification, fold ensembles and Grad-CAM through libsarco (include/sarco/sarco.h "image
classifiers"; docs/classifiers.md). Used as Model.classify / Model.gradcam / Model.preprocess.

An input is a file path (PNG, JPEG, 2D NIfTI), a sarco.Picture, or a numpy array: (C, H, W) or
(1, C, H, W) is taken as a prepared network input (already scaled and normalised, the config's
preprocessing is not applied)."""
import ctypes as _c
import json
import os

import numpy as np

from ._lib import check, lib
from .picture import Picture, _Picture, load_picture

_F = _c.POINTER(_c.c_float)
_D = _c.POINTER(_c.c_double)


class _Classification(_c.Structure):  # sarco_classification
    _fields_ = [("classes", _c.c_int), ("folds", _c.c_int), ("probability", _D), ("per_fold", _D),
                ("fold_sd", _D), ("logits", _D), ("predicted", _c.c_int), ("nimputed", _c.c_int),
                ("imputed", _c.POINTER(_c.c_char_p))]


_declared = False


def _so():
    global _declared
    so = lib()
    if not _declared:
        P, I64 = _c.c_void_p, _c.POINTER(_c.c_int64)
        C = _c.POINTER(_c.POINTER(_Classification))
        pic = _c.POINTER(_Picture)
        for name, res, args in (
                ("sarco_classification_free", None, [_c.POINTER(_Classification)]),
                ("sarco_classify_tensor", _c.c_int, [P, P, I64, _F, C]),
                ("sarco_classify_preprocess", _c.c_int, [P, P, pic, I64, _F, _c.c_size_t]),
                ("sarco_classify", _c.c_int, [P, P, pic, _c.c_char_p, C]),
                ("sarco_gradcam_tensor", _c.c_int, [P, P, I64, _F, _c.c_int, _F, _c.c_size_t]),
                ("sarco_gradcam", _c.c_int, [P, P, pic, _c.c_char_p, _c.c_int, _F, _c.c_size_t])):
            f = getattr(so, name)
            f.restype, f.argtypes = res, args
        _declared = True
    return so


def _input(x, ctx):
    """-> ("picture", Picture) or ("tensor", float32 (1, C, H, W))"""
    if isinstance(x, (str, bytes, os.PathLike)):
        return "picture", load_picture(x, context=ctx)
    if isinstance(x, Picture):
        return "picture", x
    a = np.asarray(x)
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise TypeError(f"need a path, a sarco.Picture or a numeric array, got {type(x).__name__}")
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[0] != 1:
        raise ValueError(f"a prepared input is (C, H, W) or (1, C, H, W), got shape {a.shape}")
    return "tensor", np.ascontiguousarray(a, dtype=np.float32)


def _pic_struct(p):
    data = np.ascontiguousarray(p.data, dtype=np.float32)
    s = _Picture()
    s.channels, s.height, s.width = data.shape
    s.bit_depth = p.bit_depth
    s.flags = 0x4 if p.spacing is None else 0
    if p.spacing is not None:
        s.spacing[0], s.spacing[1] = p.spacing
    s.data = data.ctypes.data_as(_F)
    s.format = {"png": 1, "jpeg": 2, "nifti": 3}.get(p.format, 0)
    return s, data  # keep data alive


def _tabular(tabular):
    if tabular is None:
        return None
    return (tabular if isinstance(tabular, str) else json.dumps(tabular)).encode()


def _shape(a):
    return (_c.c_int64 * 4)(*a.shape)


def preprocess(model, image):
    """The config's preprocessing of a picture (path or Picture) -> float32 (1, C, H, W)."""
    so, ctx = _so(), model._alive()
    kind, p = _input(image, ctx)
    if kind != "picture":
        raise TypeError("preprocess: needs a path or a sarco.Picture")
    s, keep = _pic_struct(p)
    shape = (_c.c_int64 * 4)()
    with ctx.lock:
        check(so.sarco_classify_preprocess(ctx.handle, model._h, _c.byref(s), shape, None, 0), ctx)
        x = np.empty(tuple(shape), np.float32)
        check(so.sarco_classify_preprocess(ctx.handle, model._h, _c.byref(s), shape, x.ctypes.data_as(_F), x.size),
              ctx)
    del keep
    return x


def classify(model, image, tabular=None):
    """-> dict: probability (mean over folds; a float for one sigmoid logit, else a list per class),
    per_fold, fold_sd, logits, predicted, imputed (names of imputed tabular values)."""
    so, ctx = _so(), model._alive()
    kind, p = _input(image, ctx)
    out = _c.POINTER(_Classification)()
    with ctx.lock:
        if kind == "tensor":
            if tabular is not None:
                raise ValueError("classify: tabular values need a picture input")
            check(so.sarco_classify_tensor(ctx.handle, model._h, _shape(p), p.ctypes.data_as(_F), _c.byref(out)), ctx)
        else:
            s, keep = _pic_struct(p)
            check(so.sarco_classify(ctx.handle, model._h, _c.byref(s), _tabular(tabular), _c.byref(out)), ctx)
            del keep
    try:
        r = out.contents
        nc, nf = r.classes, r.folds
        prob = [r.probability[k] for k in range(nc)]
        sd = [r.fold_sd[k] for k in range(nc)]
        per = [[r.per_fold[f * nc + k] for k in range(nc)] for f in range(nf)]
        lg = [[r.logits[f * nc + k] for k in range(nc)] for f in range(nf)]
        one = nc == 1
        return {"probability": prob[0] if one else prob, "per_fold": [v[0] for v in per] if one else per,
                "fold_sd": sd[0] if one else sd, "logits": [v[0] for v in lg] if one else lg,
                "predicted": int(r.predicted), "classes": nc, "folds": nf,
                "imputed": [r.imputed[i].decode() for i in range(r.nimputed)]}
    finally:
        so.sarco_classification_free(out)


def gradcam(model, image, target=None, tabular=None):
    """Grad-CAM map float32 (H, W) in [0, 1] on the input's grid (the picture's, or the prepared
    tensor's). target: None = the predicted class (one sigmoid logit: 1 = +logit, 0 = -logit)."""
    so, ctx = _so(), model._alive()
    kind, p = _input(image, ctx)
    t = -1 if target is None else int(target)
    with ctx.lock:
        if kind == "tensor":
            cam = np.empty(p.shape[2:], np.float32)
            check(so.sarco_gradcam_tensor(ctx.handle, model._h, _shape(p), p.ctypes.data_as(_F), t,
                                          cam.ctypes.data_as(_F), cam.size), ctx)
        else:
            s, keep = _pic_struct(p)
            cam = np.empty((s.height, s.width), np.float32)
            check(so.sarco_gradcam(ctx.handle, model._h, _c.byref(s), _tabular(tabular), t,
                                   cam.ctypes.data_as(_F), cam.size), ctx)
            del keep
    return cam
