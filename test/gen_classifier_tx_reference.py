"""Reference logits of torchvision's convnext_tiny and swin_t for test/test_classifier_tx.c.

    /opt/refenv/bin/python test/gen_classifier_tx_reference.py [OUT_DIR]    (torch + torchvision)

Full-size ConvNeXt-T / Swin-T hold 28M parameters (110 MB each in float32), too much to commit. So the
weights and the inputs are not stored: both sides generate them from a seed with a counter-based PRNG that
numpy and C compute bit-identically (`synth` below; test_classifier_tx.c has the same function), and only
torchvision's logits (computed in float64) go into test/data/classifier_tx/manifest.json with the tensor
list and the cases.

The PRNG: value i of tensor `name` is u = (splitmix64(fnv1a64(name) ^ seed, i) >> 40) / 2^23 - 1, a float32
in [-1, 1) with 24 significant bits (exact), times a float32 scale chosen from the name and shape:
  ndim >= 2                         1 / sqrt(prod(shape[1:]))   (conv/linear weights, layer_scale (C, 1, 1)
                                                                 gets scale 1, the bias table 1/sqrt(heads))
  ndim 1, name ends with .weight    1 + 0.2 u                   (LayerNorm gammas)
  other ndim 1                      0.1 u                       (biases, LayerNorm betas)
relative_position_index buffers keep torchvision's values. Inputs: x = 0.5 + 0.5 u (an image in [0, 1)).
Stochastic depth and dropout are identities in eval mode, so the random weights exercise every term.
Each case also records Grad-CAM's channel weights for sample 0 and the last class: the spatial mean of
d logit / dA, A being the target layer's output (ConvNeXt features[-1], Swin the final norm), by autograd
through torchvision's own head modules in float64.
"""
import json
import os
import sys

import numpy as np
import torch
import torchvision

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "data", "classifier_tx")
SEED = 0x5A6C0DE
M64 = (1 << 64) - 1

# (arch, torchvision constructor, classes, batch, H, W): 224 at batch 1 and 3, the studies' 112 and 84, a
# non-square size; for Swin the sizes reach the padding (84: stages 21, 11, 6, 3), a stage smaller than
# the window (112: 4x4 pads to one window, no shift), an axis-wise shift rule (96x160: stage 3 is 6x10,
# shift 0 on H, 3 on W), and a size the patch conv floors (90x130).
CASES = [
    ("torchvision.convnext_tiny", 1, 1, 224, 224),
    ("torchvision.convnext_tiny", 3, 3, 224, 224),
    ("torchvision.convnext_tiny", 1, 3, 112, 112),
    ("torchvision.convnext_tiny", 3, 1, 84, 84),
    ("torchvision.convnext_tiny", 1, 1, 96, 160),
    ("torchvision.swin_t", 1, 1, 224, 224),
    ("torchvision.swin_t", 3, 3, 224, 224),
    ("torchvision.swin_t", 1, 3, 112, 112),
    ("torchvision.swin_t", 3, 1, 84, 84),
    ("torchvision.swin_t", 1, 1, 96, 160),
    ("torchvision.swin_t", 3, 2, 90, 130),
]
BUILD = {"torchvision.convnext_tiny": torchvision.models.convnext_tiny, "torchvision.swin_t": torchvision.models.swin_t}


def fnv1a64(s):
    h = 0xCBF29CE484222325
    for b in s.encode():
        h = ((h ^ b) * 0x100000001B3) & M64
    return h


def uniform(key, n):
    """n float32 values in [-1, 1): splitmix64 of (key + (i + 1) golden), top 24 bits."""
    with np.errstate(over="ignore"):
        z = np.uint64(key) + (np.arange(n, dtype=np.uint64) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    k = (z >> np.uint64(40)).astype(np.float32)  # 24-bit integers, exact
    return k / np.float32(1 << 23) - np.float32(1)


def synth(name, shape):
    n = int(np.prod(shape)) if len(shape) else 1
    u = uniform(fnv1a64(name) ^ SEED, n)
    if len(shape) >= 2:
        fan_in = int(np.prod(shape[1:]))
        v = np.float32(1.0 / np.sqrt(float(fan_in))) * u
    elif name.endswith(".weight"):
        v = np.float32(1) + np.float32(0.2) * u
    else:
        v = np.float32(0.1) * u
    return v.astype(np.float32).reshape(shape)


def synth_input(arch, classes, batch, h, w):
    key = fnv1a64(f"input:{arch}:{classes}:{batch}:{h}x{w}") ^ SEED
    return (np.float32(0.5) + np.float32(0.5) * uniform(key, batch * 3 * h * w)).reshape(batch, 3, h, w)


def split(arch, m, x):
    """A (the Grad-CAM target activation) and the head as a function of it, from torchvision's own modules:
    ConvNeXt A = features[-1]'s output (N, C, h, w); Swin A = the final norm's output (N, h, w, C)."""
    if arch.endswith("convnext_tiny"):
        return m.features(x), lambda t: m.classifier(m.avgpool(t))
    return m.norm(m.features(x)), lambda t: m.head(m.flatten(m.avgpool(m.permute(t))))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else OUT
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    models, tensors, cases, first_case = {}, {}, [], {}
    for arch, classes, batch, h, w in CASES:
        key = (arch, classes)
        if key not in models:
            m = BUILD[arch](num_classes=classes).eval()
            sd = m.state_dict()
            new = {}
            for name, t in sd.items():
                if name.endswith("relative_position_index"):
                    new[name] = t
                else:
                    new[name] = torch.from_numpy(synth(name, tuple(t.shape)))
            m.load_state_dict(new)
            models[key] = m.double()
            tensors[f"{arch}:{classes}"] = [[n, list(t.shape), str(t.dtype).replace("torch.", "")]
                                            for n, t in sd.items()]
        m = models[key]
        x = synth_input(arch, classes, batch, h, w)
        # the features/head split in float64: A = the Grad-CAM target's output, logits = head(A)
        a, head = split(arch, m, torch.from_numpy(x).double())
        a = a.detach().requires_grad_(True)
        logits = head(a)
        y64 = logits.detach().numpy()
        if first_case.setdefault(key, True):
            first_case[key] = False
            with torch.no_grad():
                assert np.allclose(m(torch.from_numpy(x).double()).numpy(), y64, rtol=1e-12, atol=1e-12)
        # Grad-CAM channel weights of sample 0 for the last class: the spatial mean of d logit / dA
        logits[0, -1].backward()
        g = a.grad[0]
        cam = (g.mean((1, 2)) if arch.endswith("convnext_tiny") else g.mean((0, 1))).tolist()
        with torch.no_grad():
            y32 = m.float()(torch.from_numpy(x)).double().numpy()
            m.double()
        rel32 = float(np.linalg.norm(y32 - y64) / np.linalg.norm(y64))
        cases.append({"arch": arch, "classes": classes, "batch": batch, "h": h, "w": w,
                      "logits": [float(v) for v in y64.reshape(-1)], "torch_fp32_rel_l2": rel32,
                      "gradcam_target": classes - 1, "gradcam_weights": [float(f"{v:.9g}") for v in cam]})
        print(f"{arch} classes {classes} batch {batch} {h}x{w}: logits[0] {y64.reshape(-1)[0]:+.6f}, "
              f"torch fp32 vs fp64 rel L2 {rel32:.2e}", flush=True)
    manifest = {"seed": SEED, "torch": torch.__version__, "torchvision": torchvision.__version__,
                "tensors": tensors, "cases": cases}
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
