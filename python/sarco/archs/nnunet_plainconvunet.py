"""nnU-Net v2's PlainConvUNet (dynamic_network_architectures.architectures.unet): keyword
arguments as nnU-Net's plans.json gives them ("arch_kwargs" plus input_channels and num_classes)
and the duplicate keys its state_dict carries."""
import re

from ._common import (ConvertError, as_bool, as_int, as_int_list, check_shapes, is_batchnorm_counter, take_kwargs)

NAME = "nnunet.PlainConvUNet"

_R = take_kwargs.REQUIRED
SIGNATURE = [
    ("input_channels", _R), ("n_stages", _R), ("features_per_stage", _R), ("conv_op", _R), ("kernel_sizes", _R),
    ("strides", _R), ("n_conv_per_stage", _R), ("num_classes", _R), ("n_conv_per_stage_decoder", _R),
    ("conv_bias", False), ("norm_op", None), ("norm_op_kwargs", None), ("dropout_op", None),
    ("dropout_op_kwargs", None), ("nonlin", None), ("nonlin_kwargs", None), ("deep_supervision", False),
    ("nonlin_first", False),
]
_NONLINS = {"LeakyReLU", "ReLU", "PReLU", "ELU", "GELU", "SiLU", "Tanh", "Sigmoid"}


def _class_name(name, value, allowed):
    """"torch.nn.modules.conv.Conv3d", "torch.nn.Conv3d", "nn.Conv3d" -> "Conv3d"."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConvertError(f"{NAME}: {name} must be a class name such as {sorted(allowed)[0]!r}, not {value!r}")
    short = value.rsplit(".", 1)[-1]
    if short not in allowed:
        raise ConvertError(f"{NAME}: {name} {value!r} is not supported (allowed: {', '.join(sorted(allowed))}, "
                           "or null)")
    return short


def _opt_dict(name, v):
    if v is not None and not isinstance(v, dict):
        raise ConvertError(f"{NAME}: {name} must be an object or null, not {v!r}")
    return None if v is None else dict(v)


def _per_stage_vectors(name, v, n, dim):
    """int | [int | [dim ints]] * n -> n lists of dim ints."""
    if not isinstance(v, (list, tuple)):
        v = [v] * n
    if len(v) != n:
        raise ConvertError(f"{NAME}: {name} must have n_stages = {n} entries, not {len(v)}")
    return [as_int_list(NAME, name, x, dim, 1) for x in v]


def normalize_kwargs(kwargs):
    k = take_kwargs(NAME, kwargs, SIGNATURE)
    k["conv_op"] = _class_name("conv_op", k["conv_op"], {"Conv2d", "Conv3d"})
    if k["conv_op"] is None:
        raise ConvertError(f"{NAME}: conv_op is required (\"Conv2d\" or \"Conv3d\")")
    dim = int(k["conv_op"][4])
    n = k["n_stages"] = as_int(NAME, "n_stages", k["n_stages"], 2)
    k["input_channels"] = as_int(NAME, "input_channels", k["input_channels"], 1)
    k["num_classes"] = as_int(NAME, "num_classes", k["num_classes"], 1)
    k["features_per_stage"] = as_int_list(NAME, "features_per_stage", k["features_per_stage"], n, 1)
    k["kernel_sizes"] = _per_stage_vectors("kernel_sizes", k["kernel_sizes"], n, dim)
    k["strides"] = _per_stage_vectors("strides", k["strides"], n, dim)
    k["n_conv_per_stage"] = as_int_list(NAME, "n_conv_per_stage", k["n_conv_per_stage"], n, 1)
    k["n_conv_per_stage_decoder"] = as_int_list(NAME, "n_conv_per_stage_decoder", k["n_conv_per_stage_decoder"],
                                                n - 1, 1)
    norms = {f"InstanceNorm{dim}d", f"BatchNorm{dim}d", "GroupNorm"}
    k["norm_op"] = _class_name("norm_op", k["norm_op"], norms)
    k["dropout_op"] = _class_name("dropout_op", k["dropout_op"], {f"Dropout{dim}d", "Dropout"})
    k["nonlin"] = _class_name("nonlin", k["nonlin"], _NONLINS)
    for name in ("norm_op_kwargs", "dropout_op_kwargs", "nonlin_kwargs"):
        k[name] = _opt_dict(name, k[name])
    for name in ("conv_bias", "deep_supervision", "nonlin_first"):
        k[name] = as_bool(NAME, name, k[name])
    return k


_ALL_MODULES = re.compile(r"^(.*)\.all_modules\.(\d+)\.([^.]+)$")


def classify(name):
    """nn.Module state_dicts list a shared submodule under every path: each conv block's
    `all_modules` Sequential repeats its conv/norm, and the decoder keeps a reference to the
    encoder (`decoder.encoder.*`). Those copies are dropped; the converter checks they equal
    the kept original."""
    if is_batchnorm_counter(name):
        return "drop", "num_batches_tracked"
    canon = name[len("decoder."):] if name.startswith("decoder.encoder.") else name
    m = _ALL_MODULES.match(canon)
    if m:
        # all_modules = Sequential(conv, [dropout], norm, nonlin): index 0 is the conv
        mods = ("conv",) if m.group(2) == "0" else ("norm", "nonlin")
        return "duplicate", [f"{m.group(1)}.{mod}.{m.group(3)}" for mod in mods]
    if canon != name:
        return "duplicate", [canon]
    return "keep", None


def check_tensors(k, shapes):
    f, ks, st = k["features_per_stage"], k["kernel_sizes"], k["strides"]
    n, dim = k["n_stages"], int(k["conv_op"][4])
    norm_kw = k["norm_op_kwargs"] or {}
    affine = k["norm_op"] is not None and bool(norm_kw.get("affine", not k["norm_op"].startswith("Instance")))
    e, absent = {}, []

    def block(prefix, cout, cin, kernel):
        e[prefix + ".conv.weight"] = (cout, cin, *kernel)
        for p, want in ((".conv.bias", k["conv_bias"]), (".norm.weight", affine), (".norm.bias", affine)):
            if want:
                e[prefix + p] = (cout,)
            else:
                absent.append(prefix + p)

    for s in range(n):
        for c in range(k["n_conv_per_stage"][s]):
            cin = (k["input_channels"] if s == 0 else f[s - 1]) if c == 0 else f[s]
            block(f"encoder.stages.{s}.0.convs.{c}", f[s], cin, ks[s])
    absent.append(f"encoder.stages.{n}.0.convs.0.conv.weight")
    for s in range(n - 1):
        below, skip = f[-(s + 1)], f[-(s + 2)]
        e[f"decoder.transpconvs.{s}.weight"] = (below, skip, *st[-(s + 1)])
        for c in range(k["n_conv_per_stage_decoder"][s]):
            block(f"decoder.stages.{s}.convs.{c}", skip, 2 * skip if c == 0 else skip, ks[-(s + 2)])
        e[f"decoder.seg_layers.{s}.weight"] = (k["num_classes"], skip) + (1,) * dim
        e[f"decoder.seg_layers.{s}.bias"] = (k["num_classes"],)
    check_shapes(NAME, e, shapes, absent)
