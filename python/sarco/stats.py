"""Cohort statistics over subjects: volume correlation, intraclass correlation, classifier metrics.

    from sarco import stats
    r = stats.pearson(pred_volumes, ref_volumes)
    icc = stats.icc(pred_volumes, ref_volumes, form="2,1")       # or stats.icc(ratings_matrix)
    a = stats.auc(scores, truth)
    m = stats.binary_metrics(scores, truth, threshold=0.5)

Inputs must be finite. Undefined results (fewer than two values, a constant input, a single class)
raise sarco.SarcoError (status "invalid argument") with the reason, never return NaN.
"""
import ctypes

import numpy as np

from ._lib import check, declare
from .metrics import default_context

__all__ = ["pearson", "icc", "auc", "binary_metrics", "sensitivity", "specificity", "accuracy", "f1"]

_c = ctypes
ICC_FORMS = {"1,1": 0, "2,1": 1, "3,1": 2}
BINARY_FLAG_NAMES = {0x1: "no_positives", 0x2: "no_negatives", 0x4: "f1_undefined"}


class _BinaryMetrics(_c.Structure):
    _fields_ = [("tp", _c.c_int64), ("fp", _c.c_int64), ("tn", _c.c_int64), ("fn", _c.c_int64),
                ("sensitivity", _c.c_double), ("specificity", _c.c_double), ("accuracy", _c.c_double),
                ("f1", _c.c_double), ("flags", _c.c_uint32)]


_fns = None


def _api():
    global _fns
    if _fns is None:
        P, f64p, u8p, f64o = _c.c_void_p, _c.POINTER(_c.c_double), _c.POINTER(_c.c_uint8), _c.POINTER(_c.c_double)
        _fns = {
            "pearson": declare("sarco_stats_pearson", _c.c_int, P, f64p, f64p, _c.c_size_t, f64o),
            "icc": declare("sarco_stats_icc", _c.c_int, P, f64p, _c.c_size_t, _c.c_size_t, _c.c_int, f64o),
            "auc": declare("sarco_stats_auc", _c.c_int, P, f64p, u8p, _c.c_size_t, f64o),
            "binary": declare("sarco_stats_binary", _c.c_int, P, f64p, u8p, _c.c_size_t, _c.c_double,
                              _c.POINTER(_BinaryMetrics)),
        }
    return _fns


def _vec(x):
    return np.ascontiguousarray(np.asarray(x, dtype=np.float64).reshape(-1))


def _truth(t, n, fn):
    t = np.asarray(t).reshape(-1)
    if t.size != n:
        raise ValueError(f"{fn}: {n} scores but {t.size} truth values")
    return np.ascontiguousarray(t != 0, dtype=np.uint8)


def _call(name, *args):
    ctx = default_context()
    with ctx.lock:
        check(_api()[name](ctx.handle, *args), ctx)


def _p(a, ct):
    return a.ctypes.data_as(_c.POINTER(ct))


def pearson(x, y):
    """Pearson correlation coefficient of x and y (e.g. predicted and reference volumes)."""
    x, y = _vec(x), _vec(y)
    if x.size != y.size:
        raise ValueError(f"pearson: x has {x.size} values and y {y.size}")
    r = _c.c_double()
    _call("pearson", _p(x, _c.c_double), _p(y, _c.c_double), x.size, _c.byref(r))
    return r.value


def icc(ratings, other=None, form="2,1"):
    """Intraclass correlation (Shrout & Fleiss 1979) of an (n subjects, k raters) array, or of two
    1-D arrays (two raters, e.g. a model and a reference). form: "2,1" (two-way random, absolute
    agreement), "3,1" (two-way mixed, consistency) or "1,1" (one-way random); single rater."""
    key = str(form).replace("ICC", "").strip("() ").replace(" ", "")
    if key not in ICC_FORMS:
        raise ValueError(f"icc: form must be one of {sorted(ICC_FORMS)}, not {form!r}")
    a = np.asarray(ratings, dtype=np.float64)
    if other is not None:
        b = np.asarray(other, dtype=np.float64).reshape(-1)
        a = a.reshape(-1)
        if a.size != b.size:
            raise ValueError(f"icc: the two raters have {a.size} and {b.size} values")
        a = np.stack([a, b], axis=1)
    if a.ndim != 2:
        raise ValueError(f"icc: need an (n subjects, k raters) array, got shape {a.shape}")
    a = np.ascontiguousarray(a)
    v = _c.c_double()
    _call("icc", _p(a, _c.c_double), a.shape[0], a.shape[1], ICC_FORMS[key], _c.byref(v))
    return v.value


def auc(scores, truth):
    """Area under the ROC curve (Mann-Whitney U / (n_pos n_neg), ties counted one half). truth: nonzero
    or True = positive."""
    s = _vec(scores)
    t = _truth(truth, s.size, "auc")
    v = _c.c_double()
    _call("auc", _p(s, _c.c_double), _p(t, _c.c_uint8), s.size, _c.byref(v))
    return v.value


def binary_metrics(scores, truth, threshold=0.5):
    """A classifier at a threshold (positive when score >= threshold): dict with tp, fp, tn, fn,
    sensitivity, specificity, accuracy, f1 and flags (a list of "no_positives", "no_negatives",
    "f1_undefined"; the undefined value is then reported as 0)."""
    s = _vec(scores)
    t = _truth(truth, s.size, "binary_metrics")
    m = _BinaryMetrics()
    _call("binary", _p(s, _c.c_double), _p(t, _c.c_uint8), s.size, float(threshold), _c.byref(m))
    return {"tp": int(m.tp), "fp": int(m.fp), "tn": int(m.tn), "fn": int(m.fn), "sensitivity": m.sensitivity,
            "specificity": m.specificity, "accuracy": m.accuracy, "f1": m.f1,
            "flags": [n for bit, n in sorted(BINARY_FLAG_NAMES.items()) if m.flags & bit]}


def sensitivity(scores, truth, threshold=0.5):
    return binary_metrics(scores, truth, threshold)["sensitivity"]


def specificity(scores, truth, threshold=0.5):
    return binary_metrics(scores, truth, threshold)["specificity"]


def accuracy(scores, truth, threshold=0.5):
    return binary_metrics(scores, truth, threshold)["accuracy"]


def f1(scores, truth, threshold=0.5):
    return binary_metrics(scores, truth, threshold)["f1"]
