"""The architectures sarco.convert knows, by their sarco.config "arch" name.

Adding one is a new module here plus one line in REGISTRY. A module provides:
    NAME                      the "arch" string, e.g. "monai.UNETR" (the C registry's name)
    normalize_kwargs(kwargs)  -> kwargs with the reference constructor's defaults filled in;
                              raises ConvertError for unknown or invalid keywords
    classify(name)            -> ("keep", None) | ("drop", reason) | ("duplicate", [originals]):
                              what happens to a state_dict key (a duplicate is dropped once it is
                              shown equal to one of its possible originals)
    check_tensors(kwargs, shapes)
                              raises ConvertError when tensor shapes ({name: shape}, after the
                              drops) contradict the kwargs
"""
from . import monai_unetr, nnunet_plainconvunet, nnunet_resencunet
from ._common import ConvertError

REGISTRY = {m.NAME: m for m in (monai_unetr, nnunet_plainconvunet, nnunet_resencunet)}

__all__ = ["ConvertError", "REGISTRY", "get", "names"]


def names():
    return sorted(REGISTRY)


def get(name):
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise ConvertError(f"unknown architecture {name!r}; known: {', '.join(names())}") from None
