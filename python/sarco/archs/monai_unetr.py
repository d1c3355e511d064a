"""monai.networks.nets.UNETR (MONAI 1.4+): keyword arguments and tensor checks."""
import math

from ._common import (ConvertError, as_bool, as_float, as_int, as_int_list, check_shapes, is_batchnorm_counter,
                      take_kwargs)

NAME = "monai.UNETR"
PATCH = 16   # fixed in MONAI's UNETR
LAYERS = 12  # transformer blocks, fixed too

_R = take_kwargs.REQUIRED
SIGNATURE = [
    ("in_channels", _R), ("out_channels", _R), ("img_size", _R), ("feature_size", 16), ("hidden_size", 768),
    ("mlp_dim", 3072), ("num_heads", 12), ("proj_type", "conv"), ("norm_name", "instance"),
    ("conv_block", True), ("res_block", True), ("dropout_rate", 0.0), ("spatial_dims", 3), ("qkv_bias", False),
    ("save_attn", False),
]
ALIASES = {"pos_embed": "proj_type"}  # the name before MONAI 1.2


def normalize_kwargs(kwargs):
    k = take_kwargs(NAME, kwargs, SIGNATURE, ALIASES)
    k["spatial_dims"] = sd = as_int(NAME, "spatial_dims", k["spatial_dims"], 2, 3)
    for n in ("in_channels", "out_channels", "feature_size", "hidden_size", "num_heads"):
        k[n] = as_int(NAME, n, k[n], 1)
    k["mlp_dim"] = as_int(NAME, "mlp_dim", k["mlp_dim"], 0)  # 0 means hidden_size in MONAI's MLPBlock
    k["img_size"] = img = as_int_list(NAME, "img_size", k["img_size"], sd, 1)
    if any(s % PATCH for s in img):
        raise ConvertError(f"{NAME}: every img_size entry must be a multiple of the patch size {PATCH}, not {img}")
    if k["hidden_size"] % k["num_heads"]:
        raise ConvertError(f"{NAME}: hidden_size {k['hidden_size']} is not divisible by num_heads {k['num_heads']}")
    if k["proj_type"] not in ("conv", "perceptron"):
        raise ConvertError(f"{NAME}: proj_type must be \"conv\" or \"perceptron\", not {k['proj_type']!r}")
    nn = k["norm_name"]
    if isinstance(nn, (list, tuple)):
        if len(nn) != 2 or not isinstance(nn[0], str) or not isinstance(nn[1], dict):
            raise ConvertError(f"{NAME}: norm_name must be a name or [name, {{arguments}}], not {nn!r}")
        k["norm_name"] = [nn[0], dict(nn[1])]
    elif not isinstance(nn, str):
        raise ConvertError(f"{NAME}: norm_name must be a name or [name, {{arguments}}], not {nn!r}")
    norm = k["norm_name"][0] if isinstance(k["norm_name"], list) else k["norm_name"]
    if norm.lower() not in ("instance", "batch"):  # what lib/nn/unetr.c runs (MONAI's names are case-blind)
        raise ConvertError(f"{NAME}: norm_name {norm!r} is not supported by libsarco (instance, batch)")
    for n in ("conv_block", "res_block", "qkv_bias", "save_attn"):
        k[n] = as_bool(NAME, n, k[n])
    k["dropout_rate"] = as_float(NAME, "dropout_rate", k["dropout_rate"], 0.0, 1.0)
    return k


def classify(name):
    if is_batchnorm_counter(name):
        return "drop", "num_batches_tracked"
    return "keep", None  # everything else stays, unused cross-attention weights included


def check_tensors(k, shapes):
    """The tensors whose shapes follow from the kwargs; a wrong feature_size, hidden_size,
    img_size, channel count or flag shows up here before anything is written."""
    sd, hid, fs = k["spatial_dims"], k["hidden_size"], k["feature_size"]
    mlp = k["mlp_dim"] or hid
    grid = [s // PATCH for s in k["img_size"]]
    e = {"vit.patch_embedding.position_embeddings": (1, math.prod(grid), hid)}
    absent = []
    if k["proj_type"] == "conv":
        e["vit.patch_embedding.patch_embeddings.weight"] = (hid, k["in_channels"]) + (PATCH,) * sd
        e["vit.patch_embedding.patch_embeddings.bias"] = (hid,)
    else:
        e["vit.patch_embedding.patch_embeddings.1.weight"] = (hid, k["in_channels"] * PATCH ** sd)
        e["vit.patch_embedding.patch_embeddings.1.bias"] = (hid,)
    for i in range(LAYERS):
        b = f"vit.blocks.{i}."
        e[b + "attn.qkv.weight"] = (3 * hid, hid)
        if k["qkv_bias"]:
            e[b + "attn.qkv.bias"] = (3 * hid,)
        else:
            absent.append(b + "attn.qkv.bias")
        e[b + "attn.out_proj.weight"] = (hid, hid)
        e[b + "mlp.linear1.weight"] = (mlp, hid)
        e[b + "mlp.linear2.weight"] = (hid, mlp)
        for n in ("norm1", "norm2"):
            e[b + n + ".weight"] = (hid,)
    absent.append(f"vit.blocks.{LAYERS}.attn.qkv.weight")
    e["vit.norm.weight"] = (hid,)
    kk = (3,) * sd
    one = (1,) * sd
    two = (2,) * sd
    e["encoder1.layer.conv1.conv.weight"] = (fs, k["in_channels"]) + kk
    e["encoder2.transp_conv_init.conv.weight"] = (hid, 2 * fs) + two
    e["decoder5.transp_conv.conv.weight"] = (hid, 8 * fs) + two
    e["decoder5.conv_block.conv1.conv.weight"] = (8 * fs, 16 * fs) + kk
    e["decoder2.transp_conv.conv.weight"] = (2 * fs, fs) + two
    e["decoder2.conv_block.conv1.conv.weight"] = (fs, 2 * fs) + kk
    if k["res_block"]:
        e["decoder2.conv_block.conv3.conv.weight"] = (fs, 2 * fs) + one
    else:
        absent.append("decoder2.conv_block.conv3.conv.weight")
    if k["conv_block"]:
        e["encoder2.blocks.0.1.conv1.conv.weight"] = (2 * fs, 2 * fs) + kk
    else:
        absent.append("encoder2.blocks.0.1.conv1.conv.weight")
    e["out.conv.conv.weight"] = (k["out_channels"], fs) + one
    e["out.conv.conv.bias"] = (k["out_channels"],)
    check_shapes(NAME, e, shapes, absent)
