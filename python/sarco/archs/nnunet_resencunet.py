"""nnU-Net v2's ResidualEncoderUNet (dynamic_network_architectures.architectures.unet; the network
of the ResEnc M/L/XL presets): a stem conv block, stages of BasicBlockD residual blocks
(building_blocks/residual.py), and the plain UNetDecoder."""
from . import _nnunet
from ._common import ConvertError, as_int, take_kwargs

NAME = "nnunet.ResidualEncoderUNet"

_R = take_kwargs.REQUIRED
SIGNATURE = [
    ("input_channels", _R), ("n_stages", _R), ("features_per_stage", _R), ("conv_op", _R), ("kernel_sizes", _R),
    ("strides", _R), ("n_blocks_per_stage", _R), ("num_classes", _R), ("n_conv_per_stage_decoder", _R),
    ("conv_bias", False), ("norm_op", None), ("norm_op_kwargs", None), ("dropout_op", None),
    ("dropout_op_kwargs", None), ("nonlin", None), ("nonlin_kwargs", None), ("deep_supervision", False),
    ("block", "BasicBlockD"), ("bottleneck_channels", None), ("stem_channels", None),
]


def normalize_kwargs(kwargs):
    k = _nnunet.normalize_common(NAME, take_kwargs(NAME, kwargs, SIGNATURE), ("n_blocks_per_stage",))
    k["block"] = _nnunet.class_name(NAME, "block", k["block"], {"BasicBlockD"}) or "BasicBlockD"
    if k["bottleneck_channels"] is not None:
        raise ConvertError(f"{NAME}: bottleneck_channels is for BottleneckD blocks, which are not supported")
    if k["stem_channels"] is not None:
        k["stem_channels"] = as_int(NAME, "stem_channels", k["stem_channels"], 1)
    return k


classify = _nnunet.classify


def check_tensors(k, shapes):
    """Stem: StackedConvBlocks(1 conv, kernel_sizes[0], stride 1) at encoder.stem.convs.0. Stage s:
    encoder.stages.{s}.blocks.{b}.{conv1,conv2} (stride on block 0's conv1); block 0's skip is
    [AvgPool(stride) when strided] + [1x1 conv (bias False) + norm when the channels change], so the
    projection is skip.1 behind a pool and skip.0 otherwise."""
    f, n, ks, st = k["features_per_stage"], k["n_stages"], k["kernel_sizes"], k["strides"]
    dim = len(st[0])
    e = _nnunet.Expected(k)
    stem = k["stem_channels"] or f[0]
    e.conv_block("encoder.stem.convs.0", stem, k["input_channels"], ks[0])
    cin = stem
    for s in range(n):
        for b in range(k["n_blocks_per_stage"][s]):
            p = f"encoder.stages.{s}.blocks.{b}"
            e.conv_block(p + ".conv1", f[s], cin, ks[s])
            e.conv_block(p + ".conv2", f[s], f[s], ks[s])
            strided = b == 0 and any(x != 1 for x in st[s])
            idx = 1 if strided else 0
            if cin != f[s]:
                e.conv_block(f"{p}.skip.{idx}", f[s], cin, (1,) * dim, bias=False)
            else:
                e.absent.append(f"{p}.skip.{idx}.conv.weight")
            cin = f[s]
        e.absent.append(f"encoder.stages.{s}.blocks.{k['n_blocks_per_stage'][s]}.conv1.conv.weight")
    e.decoder()
    e.check(NAME, shapes)
