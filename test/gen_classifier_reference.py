"""Reference logits of torchvision's classifiers for test/test_classifier.c.

    /opt/refenv/bin/python test/gen_classifier_reference.py [OUT_DIR]     (torch + torchvision)

The full-size weights are never stored: every tensor of every model is filled from a seed by the rule
in test/classifier_seed.py, which the C test repeats bit for bit (float32). This script builds each
torchvision model, fills its state_dict that way (BatchNorm statistics included, so nothing is 0 or 1),
runs it in float64 on seeded inputs and writes test/data/classifier/manifest.json:
  models[]: arch, kwargs, seed, tensors [[name, shape, scale, offset], ...] (state_dict order,
            num_batches_tracked left out), cases [{input [N, C, H, W], seed, logits (float64),
            torch_fp32_rel_l2: how far torchvision's own float32 run is from float64; for the first case
            also gradcam_weights: the spatial mean of d logit[gradcam_target] / dA of sample 0, A being
            the Grad-CAM target layer's output, through torchvision's head modules in float64}]
It also checks that sarco.convert accepts each state_dict (the smaller ones), num_classes read from
the head's shape.
"""
import json
import os
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "python"))
import classifier_seed as cs  # noqa: E402

OUT = os.path.join(HERE, "data", "classifier")

# arch, constructor, kwargs, seed, cases [(N, H, W)]. Test time is dominated by VGG (20 GFLOP at 224);
# the batch-3 case at 224 is EfficientNet's (0.4 GFLOP per image).
MODELS = [
    ("torchvision.resnet50", {"num_classes": 3}, 101, [(1, 224, 224), (1, 112, 112), (2, 84, 120)]),
    ("torchvision.resnet50", {"num_classes": 1}, 102, [(1, 84, 84)]),
    ("torchvision.vgg19", {"num_classes": 1}, 201, [(1, 224, 224), (1, 112, 112), (1, 84, 100)]),
    ("torchvision.vgg19_bn", {"num_classes": 3}, 202, [(3, 84, 84), (1, 160, 224)]),
    ("torchvision.densenet121", {"num_classes": 1}, 301, [(1, 224, 224), (3, 112, 112)]),
    ("torchvision.densenet121", {"num_classes": 3}, 302, [(1, 84, 100)]),
    ("torchvision.efficientnet_b0", {"num_classes": 3}, 401, [(3, 224, 224), (1, 84, 84)]),
    ("torchvision.efficientnet_b0", {"num_classes": 1}, 402, [(1, 112, 150)]),
]
CONVERT_CHECK = {"torchvision.efficientnet_b0", "torchvision.resnet50", "torchvision.densenet121"}


def split(arch, model, x):
    """A (the Grad-CAM target activation, NCHW) and the head as a function of it, from torchvision's modules"""
    if arch == "torchvision.resnet50":
        m = model
        a = m.layer4(m.layer3(m.layer2(m.layer1(m.maxpool(m.relu(m.bn1(m.conv1(x))))))))
        return a, lambda t: m.fc(torch.flatten(m.avgpool(t), 1))
    a = model.features(x)  # vgg: features[-1] (last max pool); densenet: norm5; efficientnet: features[8]
    if arch == "torchvision.densenet121":
        return a, lambda t: model.classifier(torch.flatten(F.adaptive_avg_pool2d(F.relu(t), (1, 1)), 1))
    return a, lambda t: model.classifier(torch.flatten(model.avgpool(t), 1))


def build(arch, kwargs):
    return getattr(torchvision.models, arch.split(".", 1)[1])(**kwargs).eval()


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else OUT
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(2)
    models = []
    for arch, kwargs, seed, cases in MODELS:
        model = build(arch, kwargs)
        sd = model.state_dict()
        tensors, filled = [], {}
        for name, t in sd.items():
            if name.endswith("num_batches_tracked"):
                continue
            shape = list(t.shape)
            scale, offset = cs.fill_rule(name, shape)
            filled[name] = cs.fill(seed, name, shape, scale, offset)
            tensors.append([name, shape, scale, offset])
        model.load_state_dict({k: torch.from_numpy(v) for k, v in filled.items()}, strict=False)
        if arch in CONVERT_CHECK:
            from sarco import convert
            with tempfile.TemporaryDirectory() as d:
                # the converter must read num_classes from the head when the kwargs do not give it
                s = convert.convert(arch, {}, dict(filled), os.path.join(d, "m.safetensors"))
                assert s["tensors"] == len(filled), s
        m64 = build(arch, kwargs).double()
        m64.load_state_dict({k: torch.from_numpy(v).double() for k, v in filled.items()}, strict=False)
        out_cases = []
        for ci, (n, h, w) in enumerate(cases):
            cseed = seed * 100 + ci
            x = cs.fill(cseed, "input", (n, 3, h, w), 1.0, 0.0)
            with torch.no_grad():
                ref = m64(torch.from_numpy(x).double()).numpy()
                f32 = model(torch.from_numpy(x)).double().numpy()
            rel = float(np.linalg.norm(f32 - ref) / np.linalg.norm(ref))
            case = {"input": [n, 3, h, w], "seed": cseed, "logits": ref.reshape(-1).tolist(),
                    "torch_fp32_rel_l2": rel}
            if ci == 0:
                # Grad-CAM channel weights of sample 0 for the last class: the spatial mean of
                # d logit / dA through torchvision's own head modules, in float64
                a, head = split(arch, m64, torch.from_numpy(x[:1]).double())
                a = a.detach().requires_grad_(True)
                logits = head(a)
                assert torch.allclose(logits.detach(), torch.from_numpy(ref[:1]), rtol=1e-12, atol=1e-12)
                logits[0, -1].backward()
                case["gradcam_target"] = int(logits.shape[1] - 1)
                case["gradcam_weights"] = [float(f"{v:.9g}") for v in a.grad[0].mean((1, 2)).tolist()]
            out_cases.append(case)
            print(f"{arch} {kwargs} {n}x{h}x{w}: |logits| {np.abs(ref).max():.3g}, torch fp32 rel L2 {rel:.2e}",
                  flush=True)
        models.append({"arch": arch, "kwargs": kwargs, "seed": seed, "tensors": tensors, "cases": out_cases})
        del model, m64, filled
    man = {"generator": "test/gen_classifier_reference.py", "torch": torch.__version__,
           "torchvision": torchvision.__version__, "fill": "test/classifier_seed.py", "models": models}
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(man, f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
