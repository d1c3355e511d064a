"""The diagnosis rules from Python: the same engine as `sarco diagnose` (sarco_diagnose in C).

    import sarco
    r = sarco.diagnose(rules="awgs2019", sex="F", age=72, height_m=1.60, weight_kg=55,
                       grip_kg=16, gait_speed_m_s=0.9)
    r["rule_sets"][0]["verdict"]        # "possible_sarcopenia"

Keyword arguments are the rule sets' inputs (docs/clinical.md); a value may be a number or a
(value, unit) pair, which is refused when the unit does not match the measure's. The result is the
JSON report as a dict (schema sarco.diagnosis/1). Bad input raises SarcoError (status "invalid
argument" or "unsupported") with the library's message; `sarco diagnose` exits with 2 on the same.
"""
import ctypes
import json

from ._lib import Context, check, declare, lib

__all__ = ["diagnose", "rules_list", "rules_get", "l3"]

_P = ctypes.c_void_p
_declared = False


def _protos():
    global _declared
    if not _declared:
        declare("sarco_diagnose", ctypes.c_int, _P, ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(_P))
        declare("sarco_rules_get", ctypes.c_int, _P, ctypes.c_char_p, ctypes.POINTER(_P))
        declare("sarco_rules_list", ctypes.c_int, _P, ctypes.POINTER(_P))
        declare("sarco_json_free", None, _P)
        _declared = True


def _take_json(ptr):
    try:
        return json.loads(ctypes.string_at(ptr.value).decode("utf-8"))
    finally:
        lib().sarco_json_free(ptr)


def _call(fn, *args):
    _protos()
    with Context(backend="cpu", threads=1) as ctx:
        out = _P()
        check(getattr(lib(), fn)(ctx.handle, *args, ctypes.byref(out)), ctx)
        return _take_json(out)


def _value(v):
    if isinstance(v, tuple):
        if len(v) != 2:
            raise ValueError(f"a measure with a unit is a (value, unit) pair, not {v!r}")
        return {"value": v[0], "unit": str(v[1])}
    if hasattr(v, "item"):  # numpy scalars
        return v.item()
    return v


def diagnose(rules="awgs2019", sex=None, mass_from=None, measurements=None, **inputs):
    """Judges one subject against rule sets (a name, a path, a list, or names joined by ',').

    measurements: a `sarco l3` report (dict or path to its JSON) whose SMI stands in for muscle
    mass when mass_from="l3_smi:TABLE" names the cut-off table."""
    if isinstance(rules, (list, tuple)):
        rules = ",".join(rules)
    doc = {"sex": sex}
    if mass_from is not None:
        doc["mass_from"] = mass_from
    if measurements is not None:
        if isinstance(measurements, (str, bytes)) or hasattr(measurements, "__fspath__"):
            with open(measurements) as f:
                measurements = json.load(f)
        doc["measurements"] = measurements
    for k, v in inputs.items():
        if v is not None:
            doc[k] = _value(v)
    return _call("sarco_diagnose", str(rules).encode(), json.dumps(doc).encode())


def rules_list():
    """The built-in rule sets ({name, version, kind, title}) and the $SARCO_RULES_PATH directories."""
    return _call("sarco_rules_list")


def rules_get(name):
    """A rule set's data (citation, inputs with units, criteria with thresholds, verdicts)."""
    return _call("sarco_rules_get", str(name).encode())


# ---- L3 body composition -------------------------------------------------------------------------

def _as_image(x, what):
    from .pipeline import Image, load_image
    if isinstance(x, Image):
        return x
    if isinstance(x, (str, bytes)) or hasattr(x, "__fspath__"):
        return load_image(x)
    raise TypeError(f"l3: {what} must be a sarco.Image or a path, not {type(x).__name__}")


def _as_labels(x, image, what):
    import numpy as np
    from .pipeline import Image
    if isinstance(x, (str, bytes)) or hasattr(x, "__fspath__"):
        x = _as_image(x, what)
    arr = np.asarray(x.data if isinstance(x, Image) else x)
    if arr.shape != image.data.shape:
        raise ValueError(f"l3: {what} shape {arr.shape} differs from the CT's {image.data.shape}")
    if arr.size and (arr.min() < 0 or arr.max() > 65535 or not np.all(arr == np.round(arr))):
        raise ValueError(f"l3: {what} must hold integer labels 0..65535")
    return np.asfortranarray(arr, dtype=np.uint16)


def l3(image, labels=None, model=None, slice=None, vertebrae=None, l3_label=None, slices=1, classes=None,
       height_m=None, sex=None, bmi=None, weight_kg=None, table=None, muscle_hu=None, low_attenuation_hu=None,
       imat_hu=None, return_labels=False):
    """L3 body composition, as `sarco l3` (sarco_l3_report): the same JSON report as a dict.

    image: CT (sarco.Image or path), a volume or one slice. The slice: `slice`, or `vertebrae` (label
    map or path on the CT's grid) with `l3_label` (the slice nearest the label's centroid). Exactly one
    of labels (array / Image / path on the CT's grid) and model (sarco.Model or path). With
    return_labels=True also returns the centre slice's labels (nx, ny) as measured."""
    import numpy as np
    from .pipeline import _Image, _so
    from . import Model
    _protos()
    so = _so()
    if not hasattr(so, "_l3_declared"):
        declare("sarco_l3_slice_from_labels", ctypes.c_int, _P, ctypes.POINTER(_Image), ctypes.POINTER(ctypes.c_uint16),
                ctypes.c_size_t, ctypes.c_int32, ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_double))
        declare("sarco_l3_report", ctypes.c_int, _P, ctypes.POINTER(_Image), ctypes.POINTER(ctypes.c_uint16),
                ctypes.c_size_t, _P, ctypes.c_char_p, ctypes.POINTER(_P), ctypes.POINTER(ctypes.c_uint16))
        so._l3_declared = True
    ct = _as_image(image, "image")
    if (labels is None) == (model is None):
        raise ValueError("l3: give exactly one of labels and model")
    opts = {"slices": int(slices)}
    for k, v in (("classes", classes), ("height_m", height_m), ("sex", sex), ("bmi", bmi),
                 ("weight_kg", weight_kg), ("table", table), ("muscle_hu", muscle_hu),
                 ("low_attenuation_hu", low_attenuation_hu), ("imat_hu", imat_hu)):
        if v is not None:
            opts[k] = list(v) if isinstance(v, tuple) else v
    own_model = None
    if model is not None and not isinstance(model, Model):
        own_model = model = Model(model)
    ctx = model._alive() if model is not None else Context(backend="cpu")
    try:
        U16 = ctypes.POINTER(ctypes.c_uint16)
        if vertebrae is not None:
            if slice is not None or l3_label is None:
                raise ValueError("l3: give either slice or vertebrae with l3_label")
            vlab = _as_labels(vertebrae, ct, "vertebrae")
            geom = ct._struct(data_f32=np.zeros(1, np.float32))
            k, cz = ctypes.c_int64(), ctypes.c_double()
            with ctx.lock:
                check(lib().sarco_l3_slice_from_labels(ctx.handle, ctypes.byref(geom), vlab.ctypes.data_as(U16),
                                                       vlab.size, int(l3_label), ctypes.byref(k), ctypes.byref(cz)),
                      ctx)
            opts["slice"] = int(k.value)
            opts["slice_source"] = {"vertebrae": str(vertebrae) if not hasattr(vertebrae, "data") else "array",
                                    "label": int(l3_label), "centroid_z": cz.value,
                                    "rule": "the slice nearest the centroid of the L3 label"}
        elif slice is not None:
            opts["slice"] = int(slice)
        lab = _as_labels(labels, ct, "labels") if labels is not None else None
        s = ct._struct()
        plane = int(ct.data.shape[0] * ct.data.shape[1])
        out_lab = np.zeros((ct.data.shape[0], ct.data.shape[1]), np.uint16, order="F")
        out = _P()
        with ctx.lock:
            check(lib().sarco_l3_report(ctx.handle, ctypes.byref(s),
                                        lab.ctypes.data_as(U16) if lab is not None else None,
                                        lab.size if lab is not None else 0,
                                        model._h if model is not None else None, json.dumps(opts).encode(),
                                        ctypes.byref(out), out_lab.ctypes.data_as(U16)), ctx)
        rep = _take_json(out)
        assert out_lab.size == plane
        return (rep, out_lab) if return_labels else rep
    finally:
        if own_model is not None:
            own_model.close()
        elif model is None:
            ctx.close()
