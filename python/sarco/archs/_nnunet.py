"""What dynamic-network-architectures' PlainConvUNet and ResidualEncoderUNet share: the keyword
arguments as nnU-Net's plans.json gives them, the duplicate keys of their state_dicts, and the
tensors of ConvDropoutNormReLU blocks and of the UNetDecoder (building_blocks/unet_decoder.py)."""
import re

from ._common import ConvertError, as_bool, as_int, as_int_list, check_shapes, is_batchnorm_counter

NONLINS = {"LeakyReLU", "ReLU", "PReLU", "ELU", "GELU", "SiLU", "Tanh", "Sigmoid"}


def class_name(arch, name, value, allowed):
    """"torch.nn.modules.conv.Conv3d", "torch.nn.Conv3d", "nn.Conv3d" -> "Conv3d"."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConvertError(f"{arch}: {name} must be a class name such as {sorted(allowed)[0]!r}, not {value!r}")
    short = value.rsplit(".", 1)[-1]
    if short not in allowed:
        raise ConvertError(f"{arch}: {name} {value!r} is not supported (allowed: {', '.join(sorted(allowed))}, "
                           "or null)")
    return short


def opt_dict(arch, name, v):
    if v is not None and not isinstance(v, dict):
        raise ConvertError(f"{arch}: {name} must be an object or null, not {v!r}")
    return None if v is None else dict(v)


def per_stage_vectors(arch, name, v, n, dim):
    """int | [int | [dim ints]] * n -> n lists of dim ints."""
    if not isinstance(v, (list, tuple)):
        v = [v] * n
    if len(v) != n:
        raise ConvertError(f"{arch}: {name} must have n_stages = {n} entries, not {len(v)}")
    return [as_int_list(arch, name, x, dim, 1) for x in v]


def normalize_common(arch, k, per_stage_counts):
    """Checks and canonicalises the keywords both networks take (k: take_kwargs' result, changed in
    place). per_stage_counts: the names of the n_stages-long count lists (n_conv_per_stage or
    n_blocks_per_stage). Returns k."""
    k["conv_op"] = class_name(arch, "conv_op", k["conv_op"], {"Conv2d", "Conv3d"})
    if k["conv_op"] is None:
        raise ConvertError(f"{arch}: conv_op is required (\"Conv2d\" or \"Conv3d\")")
    dim = int(k["conv_op"][4])
    n = k["n_stages"] = as_int(arch, "n_stages", k["n_stages"], 2)
    k["input_channels"] = as_int(arch, "input_channels", k["input_channels"], 1)
    k["num_classes"] = as_int(arch, "num_classes", k["num_classes"], 1)
    k["features_per_stage"] = as_int_list(arch, "features_per_stage", k["features_per_stage"], n, 1)
    k["kernel_sizes"] = per_stage_vectors(arch, "kernel_sizes", k["kernel_sizes"], n, dim)
    k["strides"] = per_stage_vectors(arch, "strides", k["strides"], n, dim)
    for name in per_stage_counts:
        k[name] = as_int_list(arch, name, k[name], n, 1)
    k["n_conv_per_stage_decoder"] = as_int_list(arch, "n_conv_per_stage_decoder", k["n_conv_per_stage_decoder"],
                                                n - 1, 1)
    norms = {f"InstanceNorm{dim}d", f"BatchNorm{dim}d", "GroupNorm"}
    k["norm_op"] = class_name(arch, "norm_op", k["norm_op"], norms)
    k["dropout_op"] = class_name(arch, "dropout_op", k["dropout_op"], {f"Dropout{dim}d", "Dropout"})
    k["nonlin"] = class_name(arch, "nonlin", k["nonlin"], NONLINS)
    for name in ("norm_op_kwargs", "dropout_op_kwargs", "nonlin_kwargs"):
        k[name] = opt_dict(arch, name, k[name])
    for name in ("conv_bias", "deep_supervision") + (("nonlin_first",) if "nonlin_first" in k else ()):
        k[name] = as_bool(arch, name, k[name])
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


class Expected:
    """The tensors a network's kwargs imply ({name: shape}) and those they rule out."""

    def __init__(self, k):
        self.k = k
        self.e, self.absent = {}, []
        norm, kw = k["norm_op"], k["norm_op_kwargs"] or {}
        # torch defaults: InstanceNorm affine=False, BatchNorm/GroupNorm affine=True
        self.affine = norm is not None and bool(kw.get("affine", not norm.startswith("Instance")))
        self.running = norm is not None and norm.startswith("BatchNorm") and bool(kw.get("track_running_stats", True))

    def want(self, name, shape, present=True):
        if present:
            self.e[name] = tuple(shape)
        else:
            self.absent.append(name)

    def conv_block(self, prefix, cout, cin, kernel, bias=None):
        """ConvDropoutNormReLU at prefix: conv (bias = conv_bias unless given) and its norm."""
        bias = self.k["conv_bias"] if bias is None else bias
        self.want(prefix + ".conv.weight", (cout, cin, *kernel))
        self.want(prefix + ".conv.bias", (cout,), bias)
        for leaf in ("weight", "bias"):
            self.want(f"{prefix}.norm.{leaf}", (cout,), self.affine)
        for leaf in ("running_mean", "running_var"):
            self.want(f"{prefix}.norm.{leaf}", (cout,), self.running)

    def decoder(self):
        """UNetDecoder: per stage s (lowest resolution first) a transposed conv (kernel = stride,
        bias = conv_bias), n_conv_per_stage_decoder conv blocks on cat(up, skip), a 1x1 seg layer."""
        k = self.k
        f, ks, st, n, dim = k["features_per_stage"], k["kernel_sizes"], k["strides"], k["n_stages"], len(k["strides"][0])
        for s in range(n - 1):
            below, skip = f[-(s + 1)], f[-(s + 2)]
            self.want(f"decoder.transpconvs.{s}.weight", (below, skip, *st[-(s + 1)]))
            self.want(f"decoder.transpconvs.{s}.bias", (skip,), k["conv_bias"])
            for c in range(k["n_conv_per_stage_decoder"][s]):
                self.conv_block(f"decoder.stages.{s}.convs.{c}", skip, 2 * skip if c == 0 else skip, ks[-(s + 2)])
            self.want(f"decoder.seg_layers.{s}.weight", (k["num_classes"], skip) + (1,) * dim)
            self.want(f"decoder.seg_layers.{s}.bias", (k["num_classes"],))
        self.absent.append(f"decoder.transpconvs.{n - 1}.weight")

    def check(self, arch, shapes):
        extra = sorted(set(shapes) - set(self.e) - set(self.absent))
        check_shapes(arch, self.e, shapes, self.absent + extra)
