"""References for test/python/test_classify.py (run with /opt/refenv/bin/python from the repo root).

Writes test/data/classify/:
  grey.png, colour.jpg, colour.png  small real files (an ultrasound-like phantom, a colour gradient)
  preprocess.npz   torchvision Resize(size, antialias=True)(ToTensor()(PIL image)) per file and size
                   (float32), and PIL's Image.resize(BILINEAR) of the uint8 image / 255 for downscales
  gradcam.json     per case: arch, kwargs, weight seed, input (shape, seed), target, torchvision's
                   float64 logits and the fold probabilities; the maps are in gradcam.npz
  gradcam.npz      pytorch-grad-cam GradCAM maps (float32 (H, W)) on the documented target layer of
                   float64 torchvision models filled with test/classifier_seed.py's seeded weights
Only the small files are committed; the weights are rebuilt from the seed by the test.
"""
import json
import os
import sys

import numpy as np
import torch
import torchvision
from PIL import Image
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget, ClassifierOutputTarget
from torchvision import transforms

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "test"))
sys.path.insert(0, os.path.join(ROOT, "python"))
import classifier_seed as cs  # noqa: E402

OUT = os.path.join(ROOT, "test", "data", "classify")
SIZES = [(84, 84), (60, 90), (200, 260)]  # (H, W): down, down non-square, up (grey.png only)


def write_pictures():
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:180, 0:240]
    grey = 60 + 80 * np.exp(-((yy - 90) ** 2 / 1800 + (xx - 120) ** 2 / 5000)) + rng.normal(0, 18, yy.shape)
    Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8), "L").save(os.path.join(OUT, "grey.png"))
    yy, xx = np.mgrid[0:150, 0:200]
    rgb = np.stack([xx * 255 / 199, yy * 255 / 149, 128 + 100 * np.sin(xx / 9.0) * np.cos(yy / 7.0)], -1)
    rgb = np.clip(rgb + rng.normal(0, 10, rgb.shape), 0, 255).astype(np.uint8)
    Image.fromarray(rgb, "RGB").save(os.path.join(OUT, "colour.jpg"), quality=90)
    Image.fromarray(rgb, "RGB").save(os.path.join(OUT, "colour.png"))


def preprocess_refs():
    out = {}
    for name in ("grey.png", "colour.jpg", "colour.png"):
        img = Image.open(os.path.join(OUT, name)).convert("RGB")  # grey -> 3 channels by replication
        t = transforms.ToTensor()(img)
        for h, w in SIZES:
            if h > img.height and name != "grey.png":
                continue
            r = transforms.Resize((h, w), antialias=True)(t).numpy().astype(np.float32)
            out[f"{name}/{h}x{w}"] = r
            if h <= img.height and w <= img.width:
                p = np.asarray(img.resize((w, h), Image.BILINEAR), np.float32).transpose(2, 0, 1) / 255.0
                out[f"{name}/{h}x{w}/pil"] = p
                print(f"{name} {h}x{w}: PIL uint8 vs torchvision max |d| {np.abs(p - r).max():.2e} "
                      f"({np.abs(p - r).max() * 255:.2f}/255)")
    np.savez_compressed(os.path.join(OUT, "preprocess.npz"), **out)


def build(arch, kwargs, seed):
    model = getattr(torchvision.models, arch.split(".")[1])(**kwargs).double().eval()
    sd = {}
    for name, v in model.state_dict().items():
        if name.endswith("num_batches_tracked") or name.endswith("relative_position_index"):
            continue  # Swin's index buffers keep torchvision's values
        scale, offset = cs.fill_rule(name, tuple(v.shape))
        sd[name] = torch.from_numpy(cs.fill(seed, name, tuple(v.shape), scale, offset)).double()
    model.load_state_dict(sd, strict=False)
    return model


def target_layer(arch, model):
    if arch == "torchvision.resnet50":
        return model.layer4[-1]
    if arch == "torchvision.swin_t":
        return model.norm  # (N, h, w, C): with the reshape_transform below
    return model.features[-1]  # vgg19 (last max pool), densenet121 (norm5), efficientnet_b0


CASES = [
    # arch, num_classes, weight seeds (folds), input (N, C, H, W), target (None = predicted)
    ("torchvision.resnet50", 1, [101], [1, 3, 84, 84], None),
    ("torchvision.resnet50", 3, [102], [1, 3, 96, 112], None),
    ("torchvision.densenet121", 1, [103], [1, 3, 84, 84], None),
    ("torchvision.efficientnet_b0", 2, [104], [1, 3, 112, 112], None),
    ("torchvision.vgg19", 1, [105], [1, 3, 64, 64], 0),
    ("torchvision.efficientnet_b0", 1, [106, 107], [1, 3, 84, 84], None),  # a 2-fold ensemble
    ("torchvision.convnext_tiny", 3, [108], [1, 3, 84, 84], None),
    ("torchvision.swin_t", 1, [109], [1, 3, 84, 84], None),
]


def gradcam_refs():
    cases, maps = [], {}
    for i, (arch, nc, seeds, shape, target) in enumerate(CASES):
        models = [build(arch, {"num_classes": nc}, s) for s in seeds]
        # the first input seed whose map is not all zero in any fold (a CAM that is negative everywhere
        # is 0 after the ReLU and would test nothing)
        tries = [(seed, t) for t in ([target] if nc > 1 or target is not None else [None, 1, 0])
                 for seed in range(1000 + 10 * i, 1010 + 10 * i)]
        for input_seed, target in tries:
            x = cs.fill(input_seed, "input", shape, 1.0, 0.0)
            xt = torch.from_numpy(x).double()
            with torch.no_grad():
                logits = [m(xt)[0].numpy() for m in models]
            probs = [1 / (1 + np.exp(-l)) if nc == 1 else np.exp(l - l.max()) / np.exp(l - l.max()).sum()
                     for l in logits]
            mean = np.mean(probs, 0)
            cls = target if target is not None else (int(mean[0] >= 0.5) if nc == 1 else int(np.argmax(mean)))
            tgt = BinaryClassifierOutputTarget(cls) if nc == 1 else ClassifierOutputTarget(cls)
            fold_maps = []
            for m in models:
                rt = (lambda t: t.permute(0, 3, 1, 2)) if arch == "torchvision.swin_t" else None
                with GradCAM(model=m, target_layers=[target_layer(arch, m)], reshape_transform=rt) as cam:
                    fold_maps.append(cam(input_tensor=xt, targets=[tgt])[0].astype(np.float32))
            if min(f.max() for f in fold_maps) > 0.99:
                break
        else:
            raise SystemExit(f"case {i}: no input seed gives a non-zero map")
        maps[f"case{i}"] = np.mean(fold_maps, 0).astype(np.float32)
        cases.append({"arch": arch, "num_classes": nc, "seeds": seeds, "input": shape, "input_seed": input_seed,
                      "target": -1 if target is None else target, "class": cls,
                      "logits": [l.tolist() for l in logits], "per_fold": [p.tolist() for p in probs]})
        print(arch, nc, shape, "class", cls, "probabilities", mean)
    np.savez_compressed(os.path.join(OUT, "gradcam.npz"), **maps)
    with open(os.path.join(OUT, "gradcam.json"), "w") as f:
        json.dump({"cases": cases}, f, indent=1)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(1)
    write_pictures()
    preprocess_refs()
    gradcam_refs()
