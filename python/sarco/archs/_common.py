"""Helpers every architecture entry uses: keyword checking and tensor checks."""
import math

__all__ = ["ConvertError", "take_kwargs", "as_int", "as_bool", "as_float", "as_int_list", "is_batchnorm_counter",
           "check_shapes"]


class ConvertError(ValueError):
    """A checkpoint, its keyword arguments or its tensors do not fit the architecture."""


_REQUIRED = object()


def take_kwargs(arch, given, signature, aliases=None):
    """Fills the reference constructor's defaults and refuses unknown keywords.

    signature: list of (name, default) in the constructor's order; default REQUIRED for required
    ones. aliases: {old_name: new_name} accepted for keywords the reference renamed."""
    if not isinstance(given, dict):
        raise ConvertError(f"{arch}: kwargs must be a JSON object, not {type(given).__name__}")
    given = dict(given)
    for old, new in (aliases or {}).items():
        if old in given:
            v = given.pop(old)
            if new in given and given[new] != v:
                raise ConvertError(f"{arch}: both {old!r} (old name) and {new!r} given, with different values")
            given.setdefault(new, v)
    names = [n for n, _ in signature]
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise ConvertError(f"{arch}: unknown keyword argument(s) {', '.join(unknown)}; "
                           f"the constructor takes: {', '.join(names)}")
    out = {}
    for name, default in signature:
        if name in given:
            out[name] = given[name]
        elif default is _REQUIRED:
            raise ConvertError(f"{arch}: missing required keyword argument {name!r}")
        else:
            out[name] = default
    return out


take_kwargs.REQUIRED = _REQUIRED


def as_int(arch, name, v, lo=None, hi=None):
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        else:
            raise ConvertError(f"{arch}: {name} must be an integer, not {v!r}")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ConvertError(f"{arch}: {name} must be {rng}, not {v}")
    return v


def as_bool(arch, name, v):
    if not isinstance(v, bool):
        raise ConvertError(f"{arch}: {name} must be true or false, not {v!r}")
    return v


def as_float(arch, name, v, lo=None, hi=None):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ConvertError(f"{arch}: {name} must be a finite number, not {v!r}")
    v = float(v)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ConvertError(f"{arch}: {name} must be in [{lo}, {hi}], not {v}")
    return v


def as_int_list(arch, name, v, n, lo=None):
    """An int or a list of n ints -> list of n ints (the reference's ensure_tuple_rep)."""
    if isinstance(v, (list, tuple)):
        if len(v) != n:
            raise ConvertError(f"{arch}: {name} must have {n} entries, not {len(v)}")
        return [as_int(arch, name, x, lo) for x in v]
    return [as_int(arch, name, v, lo)] * n


def is_batchnorm_counter(name):
    """BatchNorm's num_batches_tracked: a training counter, never used at inference."""
    return name == "num_batches_tracked" or name.endswith(".num_batches_tracked")


def check_shapes(arch, expected, shapes, absent=()):
    """expected: {name: shape}; shapes: the checkpoint's {name: shape}. absent: names that must
    not be there. Raises one ConvertError listing every problem (at most 8 shown)."""
    problems = []
    for name, shape in expected.items():
        got = shapes.get(name)
        if got is None:
            problems.append(f"missing {name} (expected shape {tuple(shape)})")
        elif tuple(got) != tuple(shape):
            problems.append(f"{name} has shape {tuple(got)}, the kwargs imply {tuple(shape)}")
    for name in absent:
        if name in shapes:
            problems.append(f"unexpected {name} (the kwargs say it does not exist)")
    if problems:
        more = f" (and {len(problems) - 8} more)" if len(problems) > 8 else ""
        raise ConvertError(f"{arch}: the state_dict does not match the kwargs: " + "; ".join(problems[:8]) + more)
