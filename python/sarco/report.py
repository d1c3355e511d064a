"""Pictures from Python: overlays of an image with its labels (include/sarco/sarco.h "pictures";
docs/report.md).

    import sarco
    ct = sarco.load_image("ct.nii.gz")
    rgb = sarco.overlay(ct, labels, class_names=model.config["classes"])   # numpy uint8 (H, W, 3)
    sarco.write_png("overlay.png", rgb)
    html = sarco.report_html(segment_json=seg, diagnosis_json=dia, model="m.safetensors", pictures=[rgb])
"""
import json
import ctypes as _c

import numpy as np

from ._lib import check, lib
from .pipeline import Image, _Image, _context

__all__ = ["overlay", "overlay_color", "write_png", "report_html", "write_report"]

_P = _c.c_void_p
_STYLE = {False: 0, True: 1}
_ORIENT = {"auto": 0, "stored": 1, "radiological": 2}


class _OverlayOptions(_c.Structure):  # sarco_overlay_options
    _fields_ = [
        ("struct_size", _c.c_size_t), ("window_width", _c.c_double), ("window_level", _c.c_double),
        ("style", _c.c_int), ("alpha", _c.c_double), ("legend", _c.c_int),
        ("class_names", _c.POINTER(_c.c_char_p)), ("nclass_names", _c.c_size_t), ("pixel_mm", _c.c_double),
        ("axial_slices", _c.c_int), ("orientation", _c.c_int),
    ]


class _ReportPicture(_c.Structure):  # sarco_report_picture
    _fields_ = [("png_path", _c.c_char_p), ("rgb", _c.POINTER(_c.c_uint8)), ("width", _c.c_int64),
                ("height", _c.c_int64), ("caption", _c.c_char_p)]


class _ReportInputs(_c.Structure):  # sarco_report_inputs
    _fields_ = [("struct_size", _c.c_size_t), ("segment_json", _c.c_char_p), ("diagnosis_json", _c.c_char_p),
                ("l3_json", _c.c_char_p), ("measure_json", _c.c_char_p), ("model_path", _c.c_char_p),
                ("pictures", _c.POINTER(_ReportPicture)), ("npictures", _c.c_size_t), ("input_name", _c.c_char_p),
                ("date", _c.c_char_p), ("title", _c.c_char_p)]


_declared = False


def _so():
    global _declared
    so = lib()
    if not _declared:
        U8P = _c.POINTER(_c.c_uint8)
        protos = {
            "sarco_overlay_options_init": (None, [_c.POINTER(_OverlayOptions)]),
            "sarco_overlay_color": (None, [_c.c_int, U8P]),
            "sarco_overlay_render": (_c.c_int, [_P, _c.POINTER(_Image), _c.POINTER(_c.c_uint16),
                                                _c.POINTER(_OverlayOptions), _c.POINTER(U8P),
                                                _c.POINTER(_c.c_int64), _c.POINTER(_c.c_int64)]),
            "sarco_overlay_free": (None, [U8P]),
            "sarco_png_write": (_c.c_int, [_P, _c.c_char_p, U8P, _c.c_int64, _c.c_int64, _c.c_int,
                                           _c.POINTER(_c.c_double)]),
            "sarco_report_inputs_init": (None, [_c.POINTER(_ReportInputs)]),
            "sarco_report_html": (_c.c_int, [_P, _c.POINTER(_ReportInputs), _c.POINTER(_c.c_void_p),
                                             _c.POINTER(_c.c_size_t)]),
            "sarco_report_free": (None, [_c.c_void_p]),
            "sarco_report_write": (_c.c_int, [_P, _c.POINTER(_ReportInputs), _c.c_char_p]),
        }
        for name, (res, args) in protos.items():
            f = getattr(so, name)
            f.restype = res
            f.argtypes = args
        _declared = True
    return so


def overlay_color(label):
    """The fixed (r, g, b) display colour of a label value >= 1."""
    out = (_c.c_uint8 * 3)()
    _so().sarco_overlay_color(int(label), out)
    return tuple(int(v) for v in out)


def overlay(image, labels=None, window=None, outline=False, alpha=0.4, class_names=None, slices=8,
            pixel_mm=None, orientation="auto", legend=True, spacing=None, context=None):
    """The image windowed to grey with its labels in fixed colours and a legend -> uint8 (H, W, 3).

    image: a sarco.Image, or an array indexed [x, y(, z)] (then spacing in mm, default 1).
    labels: an integer array or Image on the same grid (0 = background), or None.
    window: (width, level) in image units; None = auto (0..255 for 8-bit images, else CT W400/L40).
    outline: outlines only instead of a translucent fill (alpha) with outlines.
    class_names: names by label value, label 0 first (e.g. a model config's "classes").
    slices: axial panels of a 3D mosaic (plus one coronal view). pixel_mm: output pixel size.
    orientation: "auto", "stored" or "radiological"."""
    so = _so()
    if not isinstance(image, Image):
        image = Image(np.asarray(image, dtype=np.float32), spacing=spacing)
    lab = None
    if labels is not None:
        lab = np.asarray(labels.data if isinstance(labels, Image) else labels)
        if lab.shape != image.data.shape:
            raise ValueError(f"overlay: labels {lab.shape} and image {image.data.shape} differ in shape")
        if lab.size and (lab.min() < 0 or lab.max() > 65535):
            raise ValueError("overlay: labels must be integers in 0..65535")
        lab = np.asfortranarray(lab, dtype=np.uint16)
    o = _OverlayOptions()
    so.sarco_overlay_options_init(_c.byref(o))
    if window is not None:
        w, lv = (float(v) for v in window)
        if not w > 0:
            raise ValueError("overlay: the window width must be > 0")
        o.window_width, o.window_level = w, lv
    o.style = _STYLE[bool(outline)]
    o.alpha = float(alpha)
    o.legend = 1 if legend else 0
    names = None
    if class_names is not None:
        names = (_c.c_char_p * len(class_names))(*[None if n is None else str(n).encode() for n in class_names])
        o.class_names = names
        o.nclass_names = len(class_names)
    o.axial_slices = int(slices)
    o.pixel_mm = float(pixel_mm) if pixel_mm else 0.0
    if orientation not in _ORIENT:
        raise ValueError(f"overlay: orientation must be one of {sorted(_ORIENT)}")
    o.orientation = _ORIENT[orientation]
    img = image._struct()
    ctx, own = _context(context)
    try:
        out = _c.POINTER(_c.c_uint8)()
        w64, h64 = _c.c_int64(), _c.c_int64()
        lp = lab.ctypes.data_as(_c.POINTER(_c.c_uint16)) if lab is not None else None
        with ctx.lock:
            check(so.sarco_overlay_render(ctx.handle, _c.byref(img), lp, _c.byref(o), _c.byref(out),
                                          _c.byref(w64), _c.byref(h64)), ctx)
        try:
            h, w = h64.value, w64.value
            return np.ctypeslib.as_array(out, shape=(h, w, 3)).copy()
        finally:
            so.sarco_overlay_free(out)
    finally:
        if own:
            ctx.close()


def write_png(path, pixels, spacing_mm=None, context=None):
    """Writes a uint8 array (H, W) grey, (H, W, 2) grey+alpha, (H, W, 3) RGB or (H, W, 4) RGBA as PNG,
    atomically; spacing_mm = (x, y) adds pHYs."""
    a = np.ascontiguousarray(pixels)
    if a.dtype != np.uint8:
        raise ValueError("write_png: pixels must be uint8")
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3:
        raise ValueError(f"write_png: need (H, W) or (H, W, C), got {a.shape}")
    so = _so()
    sp = None if spacing_mm is None else (_c.c_double * 2)(*[float(v) for v in spacing_mm])
    ctx, own = _context(context)
    try:
        with ctx.lock:
            check(so.sarco_png_write(ctx.handle, str(path).encode(), a.ctypes.data_as(_c.POINTER(_c.c_uint8)),
                                     a.shape[1], a.shape[0], a.shape[2], sp), ctx)
    finally:
        if own:
            ctx.close()


def _json_text(v):
    if v is None:
        return None
    return (v if isinstance(v, str) else json.dumps(v)).encode()


def _report_inputs(segment_json, diagnosis_json, l3_json, measure_json, model, pictures, input_name, date, title):
    """The C struct plus the Python objects it borrows (kept alive by the caller)."""
    so = _so()
    ri = _ReportInputs()
    so.sarco_report_inputs_init(_c.byref(ri))
    keep = []
    ri.segment_json, ri.diagnosis_json = _json_text(segment_json), _json_text(diagnosis_json)
    ri.l3_json, ri.measure_json = _json_text(l3_json), _json_text(measure_json)
    ri.model_path = None if model is None else str(model).encode()
    ri.input_name = None if input_name is None else str(input_name).encode()
    ri.date = None if date is None else str(date).encode()
    ri.title = None if title is None else str(title).encode()
    pics = list(pictures or [])
    arr = (_ReportPicture * max(1, len(pics)))()
    for i, p in enumerate(pics):
        caption = None
        if isinstance(p, tuple):
            p, caption = p
        if isinstance(p, np.ndarray):
            a = np.ascontiguousarray(p, dtype=np.uint8)
            if a.ndim != 3 or a.shape[2] != 3:
                raise ValueError(f"report: picture {i} must be (H, W, 3) uint8, got {a.shape}")
            keep.append(a)
            arr[i].rgb = a.ctypes.data_as(_c.POINTER(_c.c_uint8))
            arr[i].height, arr[i].width = a.shape[0], a.shape[1]
        else:
            arr[i].png_path = str(p).encode()
        arr[i].caption = None if caption is None else str(caption).encode()
    ri.pictures = arr
    ri.npictures = len(pics)
    keep.append(arr)
    return ri, keep


def report_html(segment_json=None, diagnosis_json=None, l3_json=None, measure_json=None, model=None, pictures=(),
                input_name=None, date=None, title=None, context=None):
    """The self-contained HTML report (docs/report.md) as a string. JSON arguments: text or dicts as the
    verbs print them; pictures: PNG paths or (H, W, 3) uint8 arrays, each optionally (picture, caption)."""
    so = _so()
    ri, keep = _report_inputs(segment_json, diagnosis_json, l3_json, measure_json, model, pictures, input_name,
                              date, title)
    ctx, own = _context(context)
    try:
        out = _c.c_void_p()
        n = _c.c_size_t()
        with ctx.lock:
            check(so.sarco_report_html(ctx.handle, _c.byref(ri), _c.byref(out), _c.byref(n)), ctx)
        try:
            return _c.string_at(out, n.value).decode("utf-8")
        finally:
            so.sarco_report_free(out)
    finally:
        del keep
        if own:
            ctx.close()


def write_report(path, **kwargs):
    """report_html(**kwargs) written to path atomically."""
    context = kwargs.pop("context", None)
    so = _so()
    ri, keep = _report_inputs(kwargs.pop("segment_json", None), kwargs.pop("diagnosis_json", None),
                              kwargs.pop("l3_json", None), kwargs.pop("measure_json", None), kwargs.pop("model", None),
                              kwargs.pop("pictures", ()), kwargs.pop("input_name", None), kwargs.pop("date", None),
                              kwargs.pop("title", None))
    if kwargs:
        raise TypeError(f"write_report: unknown arguments {sorted(kwargs)}")
    ctx, own = _context(context)
    try:
        with ctx.lock:
            check(so.sarco_report_write(ctx.handle, _c.byref(ri), str(path).encode()), ctx)
    finally:
        del keep
        if own:
            ctx.close()
