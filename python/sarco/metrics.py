"""Segmentation metrics, label measurements and the distance transform, numpy in, dicts out.

    import sarco
    r = sarco.evaluate(pred, ref, spacing=(2.0, 0.8, 0.8))     # {label: {"dice": ..., ...}}
    v = sarco.measure(labels, image=ct, spacing=(2.0, 0.8, 0.8))

Arrays are numpy label images, 2D or 3D, in any memory order; spacing is in mm, one value per
array axis, in the array's axis order (a NIfTI volume loaded as (x, y, z) takes (sx, sy, sz); one
transposed to (z, y, x) takes (sz, sy, sx)). Labels must be integers in 0..65535 (0 = background).
Definitions follow REFERENCE.md (see docs/measure.md); no value is ever NaN: empty masks carry
flags instead.
"""
import ctypes
import threading

import numpy as np

from ._lib import Context, check, declare

__all__ = ["evaluate", "measure", "measure_ultrasound", "edt", "FLAG_NAMES"]

# sarco_seg_metrics.flags bits (include/sarco/sarco.h)
FLAG_NAMES = {0x1: "pred_empty", 0x2: "ref_empty", 0x4: "ravd_undefined"}
_MEASURE_HAS_IMAGE = 0x1

_c = ctypes
_P = _c.c_void_p


class _LabelMeasure(_c.Structure):
    _fields_ = [("label", _c.c_int32), ("flags", _c.c_uint32), ("voxels", _c.c_int64), ("volume_ml", _c.c_double),
                ("area_cm2", _c.c_double), ("finite_voxels", _c.c_int64), ("mean", _c.c_double),
                ("sd", _c.c_double), ("min", _c.c_double), ("max", _c.c_double),
                ("fraction_muscle", _c.c_double), ("fraction_imat", _c.c_double)]


class _SegMetrics(_c.Structure):
    _fields_ = [("label", _c.c_int32), ("flags", _c.c_uint32), ("voxels_pred", _c.c_int64),
                ("voxels_ref", _c.c_int64), ("voxels_both", _c.c_int64), ("surface_pred", _c.c_int64),
                ("surface_ref", _c.c_int64), ("dice", _c.c_double), ("jaccard", _c.c_double),
                ("hd_mm", _c.c_double), ("hd95_mm", _c.c_double), ("assd_mm", _c.c_double),
                ("ravd_percent", _c.c_double), ("volume_pred_ml", _c.c_double), ("volume_ref_ml", _c.c_double),
                ("area_pred_cm2", _c.c_double), ("area_ref_cm2", _c.c_double)]


class _UsMeasure(_c.Structure):  # sarco_us_measure
    _fields_ = [("label", _c.c_int32), ("flags", _c.c_uint32), ("pixels", _c.c_int64), ("csa_mm2", _c.c_double),
                ("csa_cm2", _c.c_double), ("mt_mm", _c.c_double), ("mt_max_mm", _c.c_double),
                ("inscribed_diameter_mm", _c.c_double), ("mt_columns", _c.c_int64), ("row_min", _c.c_int64),
                ("row_max", _c.c_int64), ("col_min", _c.c_int64), ("col_max", _c.c_int64),
                ("height_mm", _c.c_double), ("width_mm", _c.c_double), ("components", _c.c_int64),
                ("largest_component_share", _c.c_double), ("finite_pixels", _c.c_int64),
                ("echo_mean", _c.c_double), ("echo_sd", _c.c_double)]


US_FLAG_NAMES = {0x2: "empty", 0x4: "fragmented", 0x8: "touches_edge"}
_US_HAS_IMAGE = 0x1

_fns = None
_ctx = None
_ctx_lock = threading.Lock()


def _api():
    global _fns
    if _fns is None:
        i64p, f64p = _c.POINTER(_c.c_int64), _c.POINTER(_c.c_double)
        u16p, i32p, szp = _c.POINTER(_c.c_uint16), _c.POINTER(_c.c_int32), _c.POINTER(_c.c_size_t)
        _fns = {
            "edt": declare("sarco_edt", _c.c_int, _P, _c.c_int, i64p, f64p, _c.POINTER(_c.c_uint8),
                           _c.POINTER(_c.c_float)),
            "measure": declare("sarco_measure_labels", _c.c_int, _P, _c.c_int, i64p, f64p, u16p,
                               _c.POINTER(_c.c_float), i32p, _c.c_size_t, _c.POINTER(_c.POINTER(_LabelMeasure)), szp),
            "measure_free": declare("sarco_label_measures_free", None, _c.POINTER(_LabelMeasure)),
            "evaluate": declare("sarco_evaluate_labels", _c.c_int, _P, _c.c_int, i64p, f64p, u16p, u16p, i32p,
                                _c.c_size_t, _c.POINTER(_c.POINTER(_SegMetrics)), szp),
            "evaluate_free": declare("sarco_seg_metrics_free", None, _c.POINTER(_SegMetrics)),
            "us": declare("sarco_measure_ultrasound", _c.c_int, _P, i64p, f64p, u16p, _c.POINTER(_c.c_float), i32p,
                          _c.c_size_t, _c.POINTER(_c.POINTER(_UsMeasure)), szp),
            "us_free": declare("sarco_us_measures_free", None, _c.POINTER(_UsMeasure)),
        }
    return _fns


def default_context():
    """The CPU context these functions use when none is passed (created on first use)."""
    global _ctx
    with _ctx_lock:
        if _ctx is None or _ctx.handle is None:
            _ctx = Context(backend="cpu")
        return _ctx


def _grid(shape, spacing, fn):
    if len(shape) not in (2, 3):
        raise ValueError(f"{fn}: need a 2D or 3D array, got shape {tuple(shape)}")
    if spacing is None:
        raise ValueError(f"{fn}: spacing (mm per array axis) is required; it is never assumed to be 1 mm")
    sp = np.asarray(spacing, dtype=np.float64).reshape(-1)
    if sp.size == 1:
        sp = np.repeat(sp, len(shape))
    if sp.size != len(shape):
        raise ValueError(f"{fn}: spacing has {sp.size} values for a {len(shape)}D array of shape {tuple(shape)}")
    dims = (_c.c_int64 * len(shape))(*[int(s) for s in shape])
    return dims, (_c.c_double * len(shape))(*[float(s) for s in sp])


def _spacing_of(spacing, *images):
    """spacing as given, else the spacing of the first sarco.Image among images (None when none is)."""
    if spacing is not None:
        return spacing
    for im in images:
        if hasattr(im, "spacing") and hasattr(im, "affine") and hasattr(im, "__array__"):
            return im.spacing
    return None


def _labels_u16(a, what, fn):
    a = np.asarray(a)
    if a.dtype == np.uint16:
        return np.ascontiguousarray(a)
    if a.dtype != np.bool_ and not np.issubdtype(a.dtype, np.integer):
        if not np.issubdtype(a.dtype, np.floating) or not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise TypeError(f"{fn}: {what} must hold integer labels, got dtype {a.dtype}")
    if a.size and (a.min() < 0 or a.max() > 65535):
        raise ValueError(f"{fn}: {what} labels must lie in 0..65535, found {a.min()}..{a.max()}")
    return np.ascontiguousarray(a, dtype=np.uint16)


def _label_list(labels, fn):
    if labels is None:
        return None, 0
    lab = [int(l) for l in np.asarray(labels).reshape(-1)]
    for l in lab:
        if l < 0 or l > 65535:
            raise ValueError(f"{fn}: label {l} is outside 0..65535")
    return (_c.c_int32 * max(len(lab), 1))(*lab), len(lab)


def _ptr(a, ctype):
    return a.ctypes.data_as(_c.POINTER(ctype))


def evaluate(pred, ref, spacing=None, labels=None, context=None):
    """Per-label agreement of a predicted label image with a reference one.

    Returns {label: entry}; every entry carries "label", "dice", "jaccard", "hd_mm", "hd95_mm",
    "assd_mm", "ravd_percent", "volume_pred_ml", "volume_ref_ml", "flags" (a list of "pred_empty",
    "ref_empty", "ravd_undefined"), the voxel counts "voxels_pred", "voxels_ref", "voxels_both" and the
    surface voxel counts "surface_pred", "surface_ref". For 2D images the sizes are areas:
    "area_pred_cm2" and "area_ref_cm2" hold them and the two volume keys are None.
    labels=None evaluates every nonzero label found in either image. pred and ref are arrays or
    sarco.Image objects (their voxels; spacing defaults to the image's)."""
    fn = "evaluate"
    spacing = _spacing_of(spacing, pred, ref)
    p, g = _labels_u16(pred, "pred", fn), _labels_u16(ref, "ref", fn)
    if p.shape != g.shape:
        raise ValueError(f"{fn}: pred has shape {p.shape} and ref {g.shape}; they must match")
    dims, sp = _grid(p.shape, spacing, fn)
    lab, nlab = _label_list(labels, fn)
    api = _api()
    ctx = context or default_context()
    out = _c.POINTER(_SegMetrics)()
    count = _c.c_size_t()
    with ctx.lock:
        st = api["evaluate"](ctx.handle, p.ndim, dims, sp, _ptr(p, _c.c_uint16), _ptr(g, _c.c_uint16), lab, nlab,
                             _c.byref(out), _c.byref(count))
        check(st, ctx)
    res = {}
    try:
        for i in range(count.value):
            m = out[i]
            e = {"label": int(m.label), "dice": m.dice, "jaccard": m.jaccard, "hd_mm": m.hd_mm,
                 "hd95_mm": m.hd95_mm, "assd_mm": m.assd_mm, "ravd_percent": m.ravd_percent,
                 "volume_pred_ml": m.volume_pred_ml if p.ndim == 3 else None,
                 "volume_ref_ml": m.volume_ref_ml if p.ndim == 3 else None,
                 "flags": [name for bit, name in sorted(FLAG_NAMES.items()) if m.flags & bit],
                 "voxels_pred": int(m.voxels_pred), "voxels_ref": int(m.voxels_ref),
                 "voxels_both": int(m.voxels_both), "surface_pred": int(m.surface_pred),
                 "surface_ref": int(m.surface_ref)}
            if p.ndim == 2:
                e["area_pred_cm2"] = m.area_pred_cm2
                e["area_ref_cm2"] = m.area_ref_cm2
            res[e["label"]] = e
    finally:
        api["evaluate_free"](out)
    return res


def measure(labels, image=None, spacing=None, which=None, context=None):
    """Per-label size and intensity statistics of a label image.

    Returns {label: entry} for every nonzero label present (or for the labels in `which`, in that
    order, absent ones with zero counts). An entry has "label", "voxels" and "volume_ml" (3D) or
    "area_cm2" (2D). With an image (e.g. CT in HU, same shape) also "hu_mean", "hu_sd" (population),
    "hu_min", "hu_max", "hu_fraction_muscle" (share inside -29..150 HU), "hu_fraction_imat"
    (-190..-30 HU) and "finite_voxels" (NaN voxels are left out of the statistics; the intensity
    fields are None when a label has no finite voxel). spacing (mm per array axis) is required,
    except for a sarco.Image (labels or image), whose spacing is the default."""
    fn = "measure"
    spacing = _spacing_of(spacing, labels, image)
    lab = _labels_u16(labels, "labels", fn)
    dims, sp = _grid(lab.shape, spacing, fn)
    img = None
    if image is not None:
        img = np.asarray(image)
        if img.shape != lab.shape:
            raise ValueError(f"{fn}: image has shape {img.shape} and labels {lab.shape}; they must match")
        if not (np.issubdtype(img.dtype, np.floating) or np.issubdtype(img.dtype, np.integer)):
            raise TypeError(f"{fn}: image must be numeric, got dtype {img.dtype}")
        img = np.ascontiguousarray(img, dtype=np.float32)
    wl, nw = _label_list(which, fn)
    api = _api()
    ctx = context or default_context()
    out = _c.POINTER(_LabelMeasure)()
    count = _c.c_size_t()
    with ctx.lock:
        st = api["measure"](ctx.handle, lab.ndim, dims, sp, _ptr(lab, _c.c_uint16),
                            None if img is None else _ptr(img, _c.c_float), wl, nw, _c.byref(out), _c.byref(count))
        check(st, ctx)
    res = {}
    try:
        for i in range(count.value):
            m = out[i]
            e = {"label": int(m.label), "voxels": int(m.voxels)}
            if lab.ndim == 3:
                e["volume_ml"] = m.volume_ml
            else:
                e["area_cm2"] = m.area_cm2
            if m.flags & _MEASURE_HAS_IMAGE:
                have = m.finite_voxels > 0
                e.update({"finite_voxels": int(m.finite_voxels),
                          "hu_mean": m.mean if have else None, "hu_sd": m.sd if have else None,
                          "hu_min": m.min if have else None, "hu_max": m.max if have else None,
                          "hu_fraction_muscle": m.fraction_muscle if have else None,
                          "hu_fraction_imat": m.fraction_imat if have else None})
            res[e["label"]] = e
    finally:
        api["measure_free"](out)
    return res


def measure_ultrasound(labels, image=None, spacing=None, which=None, context=None):
    """Ultrasound measures of a 2D label map (rows = depth, columns across), docs/measure.md.

    labels: (rows, cols) integer labels; image: None, a (rows, cols) grey array (raw values, e.g.
    0..255) or a sarco.Picture (its luma); spacing: (row mm, col mm), required: without it the call
    is refused (a pixel size is never assumed). Returns a list of dicts, one per nonzero label present
    (or per label in `which`), with "label", "pixels", "csa_mm2", "csa_cm2", "mt_mm" (median vertical
    extent over the central third of the label's width), "mt_columns", "mt_max_mm",
    "inscribed_diameter_mm", "bbox" (row_min, row_max, col_min, col_max inclusive, height_mm,
    width_mm), "components" (8-connected), "largest_component_share", "flags" (a list of "empty",
    "fragmented", "touches_edge") and with an image "echo_mean", "echo_sd" (population), "finite_pixels"."""
    fn = "measure_ultrasound"
    lab = _labels_u16(labels, "labels", fn)
    if lab.ndim != 2:
        raise ValueError(f"{fn}: need a 2D (rows, cols) label map, got shape {lab.shape}")
    dims = (_c.c_int64 * 2)(*[int(s) for s in lab.shape])
    if spacing is None:
        sp = None  # the library refuses it with its message
    else:
        spv = np.asarray(spacing, dtype=np.float64).reshape(-1)
        if spv.size != 2:
            raise ValueError(f"{fn}: spacing must be (row mm, col mm), got {spacing!r}")
        sp = (_c.c_double * 2)(*[float(v) for v in spv])
    img = None
    if image is not None:
        if hasattr(image, "luma") and hasattr(image, "data"):
            image = image.luma()
        img = np.asarray(image)
        if img.shape != lab.shape:
            raise ValueError(f"{fn}: image has shape {img.shape} and labels {lab.shape}; they must match "
                             "(colour images: pass a sarco.Picture, whose luma is used)")
        if not (np.issubdtype(img.dtype, np.floating) or np.issubdtype(img.dtype, np.integer)):
            raise TypeError(f"{fn}: image must be numeric, got dtype {img.dtype}")
        img = np.ascontiguousarray(img, dtype=np.float32)
    wl, nw = _label_list(which, fn)
    api = _api()
    ctx = context or default_context()
    out = _c.POINTER(_UsMeasure)()
    count = _c.c_size_t()
    with ctx.lock:
        st = api["us"](ctx.handle, dims, sp, _ptr(lab, _c.c_uint16), None if img is None else _ptr(img, _c.c_float),
                       wl, nw, _c.byref(out), _c.byref(count))
        check(st, ctx)
    res = []
    try:
        for i in range(count.value):
            m = out[i]
            e = {"label": int(m.label), "pixels": int(m.pixels), "csa_mm2": m.csa_mm2, "csa_cm2": m.csa_cm2,
                 "mt_mm": m.mt_mm, "mt_columns": int(m.mt_columns), "mt_max_mm": m.mt_max_mm,
                 "inscribed_diameter_mm": m.inscribed_diameter_mm,
                 "bbox": {"row_min": int(m.row_min), "row_max": int(m.row_max), "col_min": int(m.col_min),
                          "col_max": int(m.col_max), "height_mm": m.height_mm, "width_mm": m.width_mm},
                 "components": int(m.components), "largest_component_share": m.largest_component_share,
                 "flags": [name for bit, name in sorted(US_FLAG_NAMES.items()) if m.flags & bit]}
            if m.flags & _US_HAS_IMAGE:
                have = m.finite_pixels > 0
                e.update({"echo_mean": m.echo_mean if have else None, "echo_sd": m.echo_sd if have else None,
                          "finite_pixels": int(m.finite_pixels)})
            res.append(e)
    finally:
        api["us_free"](out)
    return res


def edt(mask, spacing, context=None):
    """Exact Euclidean distance transform, as scipy.ndimage.distance_transform_edt(mask, sampling=spacing):
    the distance in mm from each voxel to the nearest voxel where mask is 0 (float32; +inf everywhere
    when mask has no zero)."""
    fn = "edt"
    m = np.ascontiguousarray(np.asarray(mask) != 0, dtype=np.uint8)
    dims, sp = _grid(m.shape, spacing, fn)
    out = np.empty(m.shape, dtype=np.float32)
    api = _api()
    ctx = context or default_context()
    with ctx.lock:
        check(api["edt"](ctx.handle, m.ndim, dims, sp, _ptr(m, _c.c_uint8), _ptr(out, _c.c_float)), ctx)
    return out
