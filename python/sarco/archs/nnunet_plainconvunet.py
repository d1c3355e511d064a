"""nnU-Net v2's PlainConvUNet (dynamic_network_architectures.architectures.unet): keyword
arguments as nnU-Net's plans.json gives them ("arch_kwargs" plus input_channels and num_classes)
and the duplicate keys its state_dict carries."""
from . import _nnunet
from ._common import take_kwargs

NAME = "nnunet.PlainConvUNet"

_R = take_kwargs.REQUIRED
SIGNATURE = [
    ("input_channels", _R), ("n_stages", _R), ("features_per_stage", _R), ("conv_op", _R), ("kernel_sizes", _R),
    ("strides", _R), ("n_conv_per_stage", _R), ("num_classes", _R), ("n_conv_per_stage_decoder", _R),
    ("conv_bias", False), ("norm_op", None), ("norm_op_kwargs", None), ("dropout_op", None),
    ("dropout_op_kwargs", None), ("nonlin", None), ("nonlin_kwargs", None), ("deep_supervision", False),
    ("nonlin_first", False),
]


def normalize_kwargs(kwargs):
    return _nnunet.normalize_common(NAME, take_kwargs(NAME, kwargs, SIGNATURE), ("n_conv_per_stage",))


classify = _nnunet.classify


def check_tensors(k, shapes):
    """PlainConvEncoder: stage s = Sequential(StackedConvBlocks) -> encoder.stages.{s}.0.convs.{c};
    the first conv of a stage carries the stride."""
    f, n = k["features_per_stage"], k["n_stages"]
    e = _nnunet.Expected(k)
    for s in range(n):
        for c in range(k["n_conv_per_stage"][s]):
            cin = (k["input_channels"] if s == 0 else f[s - 1]) if c == 0 else f[s]
            e.conv_block(f"encoder.stages.{s}.0.convs.{c}", f[s], cin, k["kernel_sizes"][s])
    e.absent.append(f"encoder.stages.{n}.0.convs.0.conv.weight")
    e.decoder()
    e.check(NAME, shapes)
