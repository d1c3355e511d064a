"""What the torchvision classifier entries share: their constructor keywords and the head read from shapes."""
from ._common import ConvertError, as_float, as_int, take_kwargs


def normalize(arch, kwargs, signature, float_kwargs=()):
    k = take_kwargs(arch, kwargs, signature)
    if k.get("weights") is not None:
        raise ConvertError(f"{arch}: weights must be null (the state_dict holds the weights)")
    k["num_classes"] = as_int(arch, "num_classes", k["num_classes"], 1)
    for n in float_kwargs:
        k[n] = as_float(arch, n, k[n])
    return k


def head_classes(arch, k, shapes, name, in_features):
    """A head the user replaced (another out_features) is read from its weight's shape: num_classes follows it."""
    shape = shapes.get(name)
    if shape is None or len(shape) != 2 or shape[1] != in_features or shape[0] < 1:
        raise ConvertError(f"{arch}: the head {name} is missing or not a (classes, {in_features}) matrix "
                           f"(found {shape})")
    k["num_classes"] = int(shape[0])
    return k["num_classes"]
