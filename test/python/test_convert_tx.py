"""sarco.convert for torchvision.convnext_tiny and torchvision.swin_t (numpy only): the state_dicts are
built from the names and shapes in test/data/classifier_tx/manifest.json (torchvision's own, written by
test/gen_classifier_tx_reference.py)."""
import json
import os
import sys
import tempfile
import unittest

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "python"))

from sarco import convert  # noqa: E402
from sarco.archs import ConvertError  # noqa: E402

with open(os.path.join(ROOT, "test", "data", "classifier_tx", "manifest.json")) as f:
    MANIFEST = json.load(f)


def state_dict(key):
    return {n: np.zeros(shape, np.int64 if dt == "int64" else np.float32)
            for n, shape, dt in MANIFEST["tensors"][key]}


def read_header(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    return json.loads(header["__metadata__"]["sarco.config"]), header


class ConvertTransformers(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.out = os.path.join(self.tmp.name, "m.safetensors")

    def tearDown(self):
        self.tmp.cleanup()

    def test_swin_head_from_shapes_and_index_kept(self):
        sd = state_dict("torchvision.swin_t:3")
        convert.convert("torchvision.swin_t", {}, sd, self.out)  # num_classes not given: 3 from `head`
        cfg, header = read_header(self.out)
        self.assertEqual(cfg["kwargs"]["num_classes"], 3)
        self.assertEqual(header["features.5.2.attn.relative_position_index"]["dtype"], "I64")
        self.assertEqual(len([n for n in header if n.endswith("relative_position_index")]), 12)

    def test_convnext_num_classes_must_agree(self):
        sd = state_dict("torchvision.convnext_tiny:1")
        with self.assertRaisesRegex(ConvertError, "num_classes = 4 but classifier.2.weight has 1"):
            convert.convert("torchvision.convnext_tiny", {"num_classes": 4}, sd, self.out)
        self.assertFalse(os.path.exists(self.out))

    def test_missing_and_misshaped_tensors_named(self):
        sd = state_dict("torchvision.convnext_tiny:3")
        del sd["features.5.8.layer_scale"]
        with self.assertRaisesRegex(ConvertError, r"missing features\.5\.8\.layer_scale"):
            convert.convert("torchvision.convnext_tiny", {}, sd, self.out)
        sd = state_dict("torchvision.swin_t:1")
        sd["features.7.1.attn.relative_position_bias_table"] = np.zeros((169, 12), np.float32)
        with self.assertRaisesRegex(ConvertError, "relative_position_bias_table has shape"):
            convert.convert("torchvision.swin_t", {}, sd, self.out)

    def test_unknown_kwarg(self):
        with self.assertRaisesRegex(ConvertError, "window_size"):
            convert.convert("torchvision.swin_t", {"window_size": [8, 8]}, state_dict("torchvision.swin_t:1"),
                            self.out)


if __name__ == "__main__":
    unittest.main()
