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

__all__ = ["diagnose", "rules_list", "rules_get"]

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
