"""sarco.convert for the torchvision classifiers, and one converted model through the Python binding.

The state_dicts are built from test/data/classifier/manifest.json (torchvision's own names and shapes,
written by test/gen_classifier_reference.py); the end-to-end case fills EfficientNet-B0 with the seeded
weights of test/classifier_seed.py, converts it, runs sarco.Model.forward and compares the logits with
torchvision's (float64): relative L2 < 1e-5. numpy only."""
import json
import os
import sys
import tempfile
import unittest

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, os.path.join(ROOT, "test"))

import classifier_seed as cs  # noqa: E402
from sarco import convert, safetensors  # noqa: E402
from sarco.archs import ConvertError  # noqa: E402

with open(os.path.join(ROOT, "test", "data", "classifier", "manifest.json")) as f:
    MANIFEST = json.load(f)


def model_entry(arch, nth=0):
    return [m for m in MANIFEST["models"] if m["arch"] == arch][nth]


def zeros_state_dict(entry):
    return {name: np.zeros(shape, np.float32) for name, shape, _, _ in entry["tensors"]}


def read_config(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    return json.loads(header["__metadata__"]["sarco.config"]), header


class TorchvisionConvert(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.out = os.path.join(self.tmp.name, "m.safetensors")

    def tearDown(self):
        self.tmp.cleanup()

    def test_num_classes_from_the_head(self):
        e = model_entry("torchvision.efficientnet_b0")  # num_classes 3
        sd = zeros_state_dict(e)
        sd["features.0.1.num_batches_tracked"] = np.array(7, np.int64)
        s = convert.convert("torchvision.efficientnet_b0", {}, sd, self.out)
        self.assertEqual(s["dropped"], {"num_batches_tracked": 1})
        cfg, header = read_config(self.out)
        self.assertEqual(cfg["arch"], "torchvision.efficientnet_b0")
        self.assertEqual(cfg["kwargs"]["num_classes"], 3)
        self.assertNotIn("features.0.1.num_batches_tracked", header)

    def test_replaced_head(self):
        e = model_entry("torchvision.resnet50", 1)  # fc (1, 2048)
        sd = zeros_state_dict(e)
        convert.convert("torchvision.resnet50", {"num_classes": 1}, sd, self.out)
        self.assertEqual(read_config(self.out)[0]["kwargs"]["num_classes"], 1)
        with self.assertRaisesRegex(ConvertError, "num_classes = 4 but fc.weight has 1"):
            convert.convert("torchvision.resnet50", {"num_classes": 4}, sd, self.out)

    def test_refusals(self):
        e = model_entry("torchvision.efficientnet_b0")
        sd = zeros_state_dict(e)
        del sd["features.8.0.weight"]
        with self.assertRaisesRegex(ConvertError, "missing features.8.0.weight"):
            convert.convert("torchvision.efficientnet_b0", {}, sd, self.out)
        with self.assertRaisesRegex(ConvertError, "unknown keyword argument.*width_mult"):
            convert.convert("torchvision.efficientnet_b0", {"width_mult": 1.1}, zeros_state_dict(e), self.out)
        r = zeros_state_dict(model_entry("torchvision.resnet50"))
        with self.assertRaisesRegex(ConvertError, "groups = 32 is not supported"):
            convert.convert("torchvision.resnet50", {"groups": 32}, r, self.out)
        r["layer2.3.conv2.weight"] = np.zeros((128, 64, 3, 3), np.float32)
        with self.assertRaisesRegex(ConvertError, "layer2.3.conv2.weight has shape"):
            convert.convert("torchvision.resnet50", {}, r, self.out)
        self.assertFalse(os.path.exists(self.out))

    def test_densenet_old_key_names(self):
        e = model_entry("torchvision.densenet121")
        sd = {}
        for name, shape, _, _ in e["tensors"]:
            old = name.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2.")
            sd[old] = np.zeros(shape, np.float32)
        self.assertIn("features.denseblock1.denselayer1.norm.1.weight", sd)
        convert.convert("torchvision.densenet121", {}, sd, self.out)
        header = read_config(self.out)[1]
        self.assertIn("features.denseblock1.denselayer1.norm1.weight", header)
        self.assertIn("features.denseblock4.denselayer16.conv2.weight", header)

    def test_vgg_key_spots(self):
        for arch, nth in (("torchvision.vgg19", 0), ("torchvision.vgg19_bn", 0)):
            e = model_entry(arch, nth)
            shapes = {n: tuple(s) for n, s, _, _ in e["tensors"]}
            from sarco import archs
            mod = archs.get(arch)
            k = mod.normalize_kwargs({})
            k = mod.kwargs_from_shapes({}, k, shapes)
            mod.check_tensors(k, shapes)  # the spot checks agree with torchvision's own state_dict

    def test_seeded_efficientnet_through_the_binding(self):
        if not os.environ.get("SARCO_LIBRARY") and not os.path.exists(os.path.join(ROOT, "lib", "libsarco.so")):
            self.skipTest("libsarco.so not built")
        import sarco
        e = model_entry("torchvision.efficientnet_b0", 1)  # num_classes 1
        sd = {name: cs.fill(e["seed"], name, shape, scale, offset) for name, shape, scale, offset in e["tensors"]}
        convert.convert("torchvision.efficientnet_b0", {}, sd, self.out)
        m = sarco.Model(self.out, backend="cpu")
        for case in e["cases"]:
            x = cs.fill(case["seed"], "input", case["input"], 1.0, 0.0)
            y = m.forward(x)
            self.assertEqual(y.shape, (case["input"][0], 1, 1, 1))
            ref = np.array(case["logits"])
            rel = np.linalg.norm(y.reshape(-1) - ref) / np.linalg.norm(ref)
            print(f"  efficientnet_b0 {case['input']}: converted + binding, logits rel L2 {rel:.2e}")
            self.assertLess(rel, 1e-5)


if __name__ == "__main__":
    unittest.main()
