"""Writes the small torch.save files test/python/test_convert.py reads, and what they must hold.

Run with the reference environment (torch + MONAI):  /opt/refenv/bin/python test/gen_torch_checkpoints.py
Outputs, in test/data/convert/:
  plain.pt         OrderedDict: float32, a transposed (non-contiguous) tensor, float16, bfloat16,
                   two tensors sharing one storage at offsets (one strided), int64, bool, 0-d, empty
  wrapped.pt       {"state_dict": {"module.<name>": ...}, "epoch", "optimizer": {...}}
  nnunet_like.pt   an nnU-Net v2 style checkpoint: {"network_weights": PlainConvUNet-shaped state_dict
                   with its duplicate keys, "init_args" holding a torch.device, "logging" with numpy
                   scalars, ...}; kwargs in nnunet_like.json
  unetr_tiny.pt    a MONAI UNETR state_dict (3-D, img 32, feature 4, hidden 32, mlp 64, 2 heads), weights
                   rounded to float16 to keep the file small; unetr_tiny.json has the kwargs and a
                   sha256 per tensor; unetr_forward.npz has MONAI's output for a seeded input
  unetr_configs.json  key -> shape of MONAI UNETR state_dicts for several kwargs (the converter's checks)
  bigendian.pt     float32 tensors written as a big-endian machine would (byteorder record "big")
  legacy.pt        the pre-1.6 (non-zip) format
  malicious.pt     a pickle that calls os.system; oob.pt: a tensor whose strides reach past its storage
  expected.npz / expected.json   every array (bfloat16 as uint16 bits) and plain value the reader must return
"""
import collections
import hashlib
import io
import json
import os
import zipfile

import numpy as np
import torch
from torch import nn

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "convert")


def path(name):
    return os.path.join(OUT, name)


def flatten(obj, prefix=""):
    """path -> tensor and path -> plain value, paths joined with "/" (the test walks the same way)."""
    arrays, values = {}, {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            a, b = flatten(v, f"{prefix}{k}/")
            arrays.update(a)
            values.update(b)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            a, b = flatten(v, f"{prefix}{i}/")
            arrays.update(a)
            values.update(b)
    elif isinstance(obj, torch.Tensor):
        arrays[prefix[:-1]] = obj
    elif isinstance(obj, torch.device):
        values[prefix[:-1]] = str(obj)
    elif isinstance(obj, np.generic):
        values[prefix[:-1]] = obj.item()
    else:
        values[prefix[:-1]] = obj
    return arrays, values


def as_numpy(t):
    """(array, is_bf16): bfloat16 as its uint16 bits."""
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16).copy(), True
    return t.numpy().copy(), False


def plain_state_dict(g):
    base = torch.arange(40, dtype=torch.float32) * 0.5 - 3.0
    sd = collections.OrderedDict()
    sd["conv.weight"] = torch.randn(3, 2, 3, 3, generator=g)
    sd["linear.weight_t"] = torch.randn(5, 4, generator=g).t()            # stride (1, 4)
    sd["perm.weight"] = torch.randn(2, 3, 4, generator=g).permute(2, 0, 1)  # non-contiguous 3-D
    sd["half.weight"] = (torch.randn(2, 3, generator=g) * 100).half()
    sd["bf16.weight"] = torch.randn(5, generator=g).to(torch.bfloat16)
    sd["shared.first"] = base[3:9].view(2, 3)      # offset 3 into a shared storage
    sd["shared.second"] = base[10:34:3]           # offset 10, stride 3, same storage
    sd["bn.running_mean"] = torch.randn(3, generator=g, dtype=torch.float64)
    sd["bn.num_batches_tracked"] = torch.tensor(17, dtype=torch.int64)  # 0-d
    sd["mask"] = torch.tensor([True, False, True])
    sd["index"] = torch.arange(-3, 3, dtype=torch.int32).view(2, 3)
    sd["empty"] = torch.zeros(0, 3)
    assert not sd["linear.weight_t"].is_contiguous() and not sd["perm.weight"].is_contiguous()
    assert sd["shared.first"].untyped_storage().data_ptr() == sd["shared.second"].untyped_storage().data_ptr()
    return sd


# A stand-in with PlainConvUNet's module structure (dynamic_network_architectures is not installed
# here): the same attribute names, so state_dict() lists the same keys, duplicates included.
class ConvBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride, 1, bias=True)
        self.norm = nn.InstanceNorm2d(cout, eps=1e-5, affine=True)
        self.nonlin = nn.LeakyReLU(inplace=True)
        self.all_modules = nn.Sequential(self.conv, self.norm, self.nonlin)


class Stacked(nn.Module):
    def __init__(self, n, cin, cout, stride):
        super().__init__()
        self.convs = nn.Sequential(*[ConvBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1)
                                     for i in range(n)])


class Encoder(nn.Module):
    def __init__(self, cin, feats, strides, nconv):
        super().__init__()
        stages = []
        for f, s, n in zip(feats, strides, nconv):
            stages.append(nn.Sequential(Stacked(n, cin, f, s)))
            cin = f
        self.stages = nn.Sequential(*stages)


class Decoder(nn.Module):
    def __init__(self, encoder, feats, strides, nconv_dec, classes):
        super().__init__()
        self.encoder = encoder
        self.stages, self.transpconvs, self.seg_layers = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for s in range(1, len(feats)):
            below, skip = feats[-s], feats[-(s + 1)]
            self.transpconvs.append(nn.ConvTranspose2d(below, skip, strides[-s], strides[-s], bias=True))
            self.stages.append(Stacked(nconv_dec[s - 1], 2 * skip, skip, 1))
            self.seg_layers.append(nn.Conv2d(skip, classes, 1, 1, 0, bias=True))


class PlainConvUNetKeys(nn.Module):
    def __init__(self, k):
        super().__init__()
        strides = [s[0] for s in k["strides"]]
        self.encoder = Encoder(k["input_channels"], k["features_per_stage"], strides, k["n_conv_per_stage"])
        self.decoder = Decoder(self.encoder, k["features_per_stage"], strides, k["n_conv_per_stage_decoder"],
                               k["num_classes"])


NNUNET_KWARGS = {  # as nnU-Net's plans.json spells them, plus input_channels and num_classes
    "input_channels": 1, "n_stages": 3, "features_per_stage": [2, 4, 8],
    "conv_op": "torch.nn.modules.conv.Conv2d", "kernel_sizes": [[3, 3], [3, 3], [3, 3]],
    "strides": [[1, 1], [2, 2], [2, 2]], "n_conv_per_stage": [2, 2, 2], "num_classes": 3,
    "n_conv_per_stage_decoder": [1, 1], "conv_bias": True,
    "norm_op": "torch.nn.modules.instancenorm.InstanceNorm2d", "norm_op_kwargs": {"eps": 1e-05, "affine": True},
    "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
    "nonlin_kwargs": {"inplace": True},
}

UNETR_KWARGS = {"in_channels": 1, "out_channels": 3, "img_size": [32, 32, 32], "feature_size": 4,
                "hidden_size": 32, "mlp_dim": 64, "num_heads": 2}

UNETR_VARIANTS = [
    {},
    {"proj_type": "perceptron"},
    {"res_block": False},
    {"conv_block": False},
    {"qkv_bias": True, "mlp_dim": 0},
    {"norm_name": "batch", "out_channels": 5, "in_channels": 2},
    {"spatial_dims": 2, "img_size": [32, 48], "feature_size": 6},
    {"norm_name": ["instance", {"affine": True}]},
]


def sha256(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def save_bigendian(name, tensors):
    """torch.save on this (little-endian) machine, then rewritten as a big-endian writer would."""
    buf = io.BytesIO()
    torch.save(tensors, buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    with zipfile.ZipFile(path(name), "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("/byteorder"):
                data = b"big"
            elif "/data/" in info.filename:
                data = np.frombuffer(data, "<f4").astype(">f4").tobytes()
            dst.writestr(info, data)


class RunsCommand:
    def __reduce__(self):
        return (os.system, ("exit 3",))


class PastItsStorage:
    def __init__(self, t):
        self.t = t

    def __reduce__(self):
        # a 100-element tensor over a 4-element storage: a reader trusting it reads foreign memory
        storage = torch.storage.TypedStorage(wrap_storage=self.t.untyped_storage(), dtype=self.t.dtype,
                                             _internal=True)
        return (torch._utils._rebuild_tensor_v2, (storage, 0, (100,), (1,), False, collections.OrderedDict()))


def main():
    os.makedirs(OUT, exist_ok=True)
    g = torch.Generator().manual_seed(20240601)
    expected_arrays, bf16, values = {}, [], {}

    def record(fname, obj):
        arrays, vals = flatten(obj)
        for k, t in arrays.items():
            a, is_bf16 = as_numpy(t)
            expected_arrays[f"{fname}:{k}"] = a
            if is_bf16:
                bf16.append(f"{fname}:{k}")
        values[fname] = vals

    sd = plain_state_dict(g)
    torch.save(sd, path("plain.pt"))
    record("plain.pt", sd)

    inner = collections.OrderedDict((f"module.{k}", v) for k, v in list(sd.items())[:4])
    wrapped = {"state_dict": inner, "epoch": 3, "best_metric": 0.875, "name": "run-7",
               "optimizer": {"lr": 0.01, "betas": (0.9, 0.999),
                             "state": {0: {"step": torch.tensor(5.0), "exp_avg": torch.randn(2, 2, generator=g)}}}}
    torch.save(wrapped, path("wrapped.pt"))
    record("wrapped.pt", wrapped)

    torch.manual_seed(7)
    net = PlainConvUNetKeys(NNUNET_KWARGS)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    nsd = net.state_dict()
    assert any(".all_modules." in k for k in nsd) and any(k.startswith("decoder.encoder.") for k in nsd)
    ckpt = {"network_weights": nsd, "optimizer_state": {"state": {}, "param_groups": [{"lr": 0.01}]},
            "init_args": {"plans": {"name": "tiny"}, "fold": 0, "device": torch.device("cpu")},
            "trainer_name": "nnUNetTrainer", "current_epoch": 2, "inference_allowed_mirroring_axes": (0, 1),
            "logging": {"ema_fg_dice": [np.float64(0.25), np.float64(0.5)], "lrs": [np.float32(0.01)],
                        "epoch": [np.int64(1)]}}
    torch.save(ckpt, path("nnunet_like.pt"))
    record("nnunet_like.pt", ckpt)
    canonical = [k for k in nsd if ".all_modules." not in k and not k.startswith("decoder.encoder.")]
    with open(path("nnunet_like.json"), "w") as f:
        json.dump({"kwargs": NNUNET_KWARGS, "canonical_keys": canonical,
                   "duplicate_keys": [k for k in nsd if k not in canonical]}, f, indent=1)

    from monai.networks.nets import UNETR
    torch.manual_seed(11)
    unetr = UNETR(**UNETR_KWARGS).eval()
    with torch.no_grad():
        for p in unetr.parameters():
            p.copy_(p.half().float())  # float16-exact weights: the saved half copy loses nothing
    usd = collections.OrderedDict((k, v.half()) for k, v in unetr.state_dict().items())
    torch.save(usd, path("unetr_tiny.pt"))
    tensors = {}
    for k, v in usd.items():
        a, _ = as_numpy(v)
        tensors[k] = [str(a.dtype), list(a.shape), sha256(a)]
    seed = 1234
    x = np.random.RandomState(seed).standard_normal((1, 1, 32, 32, 32)).astype(np.float32)
    with torch.no_grad():
        y = unetr(torch.from_numpy(x)).numpy()
    with open(path("unetr_tiny.json"), "w") as f:
        json.dump({"kwargs": UNETR_KWARGS, "tensors": tensors,
                   "forward": {"input": "np.random.RandomState(1234).standard_normal((1, 1, 32, 32, 32))"
                                        ".astype(np.float32)", "seed": seed, "input_shape": list(x.shape),
                               "output_shape": list(y.shape), "subsample": "y[:, :, ::2, ::2, ::2]"}}, f, indent=1)
    np.savez_compressed(path("unetr_forward.npz"), y_sub=y[:, :, ::2, ::2, ::2],
                        y_sum=np.float64(y.astype(np.float64).sum()),
                        y_abs_sum=np.float64(np.abs(y.astype(np.float64)).sum()),
                        argmax=y.argmax(1).astype(np.uint8))

    configs = []
    for change in UNETR_VARIANTS:
        kw = dict(UNETR_KWARGS, **change)
        if kw.get("spatial_dims") == 2:
            kw["img_size"] = change["img_size"]
        m = UNETR(**{k: (tuple(v) if k == "norm_name" and isinstance(v, list) else v) for k, v in kw.items()})
        configs.append({"kwargs": kw, "shapes": {k: list(v.shape) for k, v in m.state_dict().items()}})
    with open(path("unetr_configs.json"), "w") as f:
        json.dump(configs, f, separators=(",", ":"))

    be = collections.OrderedDict([("a", torch.randn(2, 3, generator=g)),
                                  ("b", torch.randn(6, generator=g)[1::2])])
    save_bigendian("bigendian.pt", be)
    reread = torch.load(path("bigendian.pt"), weights_only=True)
    assert all(torch.equal(reread[k], be[k]) for k in be), "torch reads our big-endian file differently"
    record("bigendian.pt", be)

    torch.save({"w": torch.ones(2)}, path("legacy.pt"), _use_new_zipfile_serialization=False)
    torch.save(collections.OrderedDict([("w", torch.ones(2)), ("x", RunsCommand())]), path("malicious.pt"))
    torch.save(collections.OrderedDict([("w", PastItsStorage(torch.ones(4)))]), path("oob.pt"))

    np.savez_compressed(path("expected.npz"), **expected_arrays)
    with open(path("expected.json"), "w") as f:
        json.dump({"bf16_bits": bf16, "values": values,
                   "files": sorted({k.split(":")[0] for k in expected_arrays})}, f, indent=1)
    total = sum(os.path.getsize(path(n)) for n in os.listdir(OUT))
    print(f"wrote {len(os.listdir(OUT))} files to {OUT}, {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
