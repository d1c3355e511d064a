"""Reference outputs of MONAI's UNETR for test/test_unetr.c and test/python/test_unetr.py.

    /opt/refenv/bin/python test/gen_unetr_reference.py [OUT_DIR]   (torch + MONAI + einops)

Builds small UNETR variants with fixed seeds, perturbs every norm/bias so none is trivially 0/1
(batch-norm variants also get non-trivial running statistics), and writes into test/data/unetr/:
  <name>.safetensors   the state_dict as a libsarco model file (sarco.config in __metadata__)
  <name>_in.bin        a seeded input, float32 little-endian, PyTorch layout
  <name>_out.bin       MONAI's output for it, computed in float64 and stored as float32
  manifest.json        shapes, file names, and how far MONAI's own float32 run is from float64
Weights of the 3D variants are stored as float16 (to keep the files small); the reference is run
with exactly those float16 values widened, so the comparison stays an FP32-exact one.
"""
import json
import os
import struct
import sys

import numpy as np
import torch
from monai.networks.nets import UNETR
import monai

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "data", "unetr")

# name, kwargs, batch, weight dtype, keep the MONAI>=1.4 key set (norm_cross_attn), seed
VARIANTS = [
    # (a) the thigh model's structure, small: conv patch embedding, instance norm, residual blocks
    ("a_conv_instance_res", dict(in_channels=1, out_channels=3, img_size=(32, 32, 32), feature_size=8,
                                 hidden_size=48, mlp_dim=96, num_heads=4), 1, "F16", True, 1),
    # (b) perceptron patch embedding, batch norm (folded at load), qkv bias, pre-1.4 key set
    ("b_perceptron_batch_qkvbias", dict(in_channels=1, out_channels=2, img_size=(16, 32, 16), feature_size=2,
                                        hidden_size=16, mlp_dim=24, num_heads=2, proj_type="perceptron",
                                        norm_name="batch", qkv_bias=True), 1, "F16", False, 2),
    # (c) 2D, affine instance norm, batch of 2, pre-1.4 key set
    ("c_2d_instance_affine", dict(in_channels=1, out_channels=4, img_size=(32, 48), feature_size=4,
                                  hidden_size=24, mlp_dim=48, num_heads=3, spatial_dims=2,
                                  norm_name=("instance", {"affine": True})), 2, "F16", False, 3),
    # (d) non-cubic 3D, norm given as a tuple with its own eps (and an upper-case name: MONAI is case-blind)
    ("d_noncubic", dict(in_channels=1, out_channels=2, img_size=(32, 48, 16), feature_size=2, hidden_size=16,
                        mlp_dim=32, num_heads=2, norm_name=("INSTANCE", {"eps": 1e-3})), 1, "F16", True, 4),
    # (e) conv_block=False (encoders are bare transposed convs) and res_block=False (UnetBasicBlock)
    ("e_plain_blocks", dict(in_channels=1, out_channels=2, img_size=(16, 16, 32), feature_size=2, hidden_size=16,
                            mlp_dim=32, num_heads=2, conv_block=False, res_block=False), 1, "F16", True, 5),
    # (f) 2D perceptron on 3 channels, batch norm, UnetBasicBlock, mlp_dim=0 (= hidden_size), float32 weights
    ("f_2d_perceptron_batch_basic", dict(in_channels=3, out_channels=3, img_size=(32, 64), feature_size=4,
                                         hidden_size=16, mlp_dim=0, num_heads=4, spatial_dims=2,
                                         proj_type="perceptron", norm_name="batch", res_block=False,
                                         qkv_bias=True), 1, "F32", True, 6),
]


def perturb(model, gen):
    """Random non-trivial values for everything MONAI initialises to 0 or 1 (batch-norm running
    statistics: calibrate_batchnorm)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if "norm" in name and leaf == "weight":
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
            elif leaf == "bias":
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif name.endswith("position_embeddings"):
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))



def calibrate_batchnorm(model, in_shape, gen):
    """Running statistics as training would leave them (the batch statistics of random inputs),
    then moved off: with untrained convs and made-up statistics the activations shrink stage by
    stage, and the ViT's contribution would drown under the full-resolution skip. Returns whether
    the model has batch norms."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return False
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn((4,) + tuple(in_shape[1:]), generator=gen))
    model.eval()
    with torch.no_grad():
        for m in bns:
            m.running_mean.add_(0.1 * m.running_var.sqrt() * torch.randn(m.running_mean.shape, generator=gen))
            m.running_var.mul_(0.7 + 0.6 * torch.rand(m.running_var.shape, generator=gen))
            m.num_batches_tracked.fill_(1000)
    return True


def write_safetensors(path, tensors, metadata):
    """Minimal safetensors writer: 8-byte header length, JSON header, tensors back to back."""
    head = {"__metadata__": metadata}
    offset = 0
    blobs = []
    for name, a in tensors:
        a = np.ascontiguousarray(a)
        dt = {np.dtype("<f4"): "F32", np.dtype("<f2"): "F16", np.dtype("<i8"): "I64"}[a.dtype.newbyteorder("<")]
        raw = a.astype(a.dtype.newbyteorder("<")).tobytes()
        head[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    text = json.dumps(head, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def errors(got, ref):
    got = got.astype(np.float64)
    ref = ref.astype(np.float64)
    return float(np.abs(got - ref).max()), float(np.linalg.norm(got - ref) / np.linalg.norm(ref))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else OUT  # another folder: to check that a rerun is bit-identical
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(2)
    manifest = {"monai": monai.__version__, "torch": torch.__version__, "variants": []}
    for name, kwargs, batch, wdtype, new_keys, seed in VARIANTS:
        torch.manual_seed(seed)
        model = UNETR(**kwargs).eval()
        gen = torch.Generator().manual_seed(1000 + seed)
        perturb(model, gen)
        sp = kwargs.get("spatial_dims", 3)
        img = kwargs["img_size"]
        in_shape = (batch, kwargs["in_channels"]) + tuple(img if isinstance(img, tuple) else (img,) * sp)
        calibrate_batchnorm(model, in_shape, gen)
        sd = model.state_dict()
        if wdtype == "F16":  # make every float weight exactly representable in float16
            with torch.no_grad():
                for v in sd.values():
                    if v.is_floating_point():
                        v.copy_(v.half().float())
        tensors = []
        for k, v in sd.items():
            if not new_keys and ".norm_cross_attn." in k:
                continue  # the key set of MONAI before 1.4
            a = v.detach().cpu().numpy()
            if a.dtype == np.float32 and wdtype == "F16":
                a = a.astype(np.float16)
            tensors.append((k, a))
        jkw = {k: (list(v) if isinstance(v, tuple) else v) for k, v in kwargs.items()}
        config = {"arch": "monai.UNETR", "kwargs": jkw}
        write_safetensors(os.path.join(out, name + ".safetensors"), tensors,
                          {"format": "pt", "sarco.config": json.dumps(config)})

        x = torch.randn(in_shape, generator=torch.Generator().manual_seed(2000 + seed))
        with torch.no_grad():
            y32 = model(x).numpy()
            y64 = model.double()(x.double()).numpy()
        x.numpy().astype("<f4").tofile(os.path.join(out, name + "_in.bin"))
        y64.astype("<f4").tofile(os.path.join(out, name + "_out.bin"))
        mx, rel = errors(y32, y64)
        manifest["variants"].append({
            "name": name, "model": name + ".safetensors", "input": name + "_in.bin", "output": name + "_out.bin",
            "input_shape": list(in_shape), "output_shape": list(y64.shape), "weights": wdtype,
            "keys": "monai>=1.4" if new_keys else "monai<1.4", "kwargs": jkw,
            "monai_fp32_vs_fp64": {"max_abs": mx, "rel_l2": rel},
            "output_rms": float(np.sqrt((y64 ** 2).mean())),
        })
        print(f"{name}: in {in_shape} out {tuple(y64.shape)} monai fp32 vs fp64 max {mx:.2e} rel {rel:.2e}",
              file=sys.stderr)
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
