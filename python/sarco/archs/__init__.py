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
and optionally:
    rename(name)              -> the current name of a key older checkpoints spell differently
    kwargs_from_shapes(given, kwargs, shapes)
                              -> kwargs completed from the tensors (a classifier's num_classes from
                              its head); given is the user's raw --kwargs
"""
from . import monai_unetr, nnunet_plainconvunet, nnunet_resencunet
from ._common import ConvertError
from .torchvision_convnext import CONVNEXT_TINY
from .torchvision_densenet import DENSENET121
from .torchvision_efficientnet import EFFICIENTNET_B0
from .torchvision_resnet import RESNET50
from .torchvision_swin import SWIN_T
from .torchvision_vgg import VGG19, VGG19_BN

REGISTRY = {m.NAME: m for m in (monai_unetr, nnunet_plainconvunet, nnunet_resencunet, RESNET50, VGG19, VGG19_BN,
                                DENSENET121, EFFICIENTNET_B0, CONVNEXT_TINY, SWIN_T)}

__all__ = ["ConvertError", "REGISTRY", "get", "names"]


def names():
    return sorted(REGISTRY)


def get(name):
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise ConvertError(f"unknown architecture {name!r}; known: {', '.join(names())}") from None
