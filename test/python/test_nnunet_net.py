"""nnU-Net networks and multi-fold model files through the Python binding (sarco.Model): every
reference variant of test/data/nnunet/ (dynamic-network-architectures' own forward in float64, from
test/gen_nnunet_reference.py) and both folds of the fake results folder, with the bounds of
test/test_nnunet.c: relative L2 < 1e-5 and max abs < 1e-5 x max(1, max |reference|). numpy only;
needs the shared library (SARCO_LIBRARY or lib/libsarco.so; `make test-py` sets it)."""
import json
import os
import shutil
import sys
import tempfile
import unittest

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "python"))
DATA = os.path.join(ROOT, "test", "data", "nnunet")

REL_L2_MAX = 1e-5
MAX_ABS_FRAC = 1e-5

try:
    import sarco
    _why_not = None
except Exception as e:  # the binding or the library is not there yet
    sarco = None
    _why_not = f"sarco binding unavailable: {e}"


def manifest():
    with open(os.path.join(DATA, "manifest.json")) as f:
        return json.load(f)


def load_bin(name, shape):
    return np.fromfile(os.path.join(DATA, name), dtype="<f4").reshape(shape)


@unittest.skipIf(sarco is None, _why_not)
class NnunetNetworks(unittest.TestCase):
    def check(self, y, ref, what):
        d = y.astype(np.float64) - ref
        rel = float(np.sqrt((d ** 2).sum() / (ref ** 2).sum()))
        mx = float(np.abs(d).max())
        self.assertLess(rel, REL_L2_MAX, what)
        self.assertLess(mx, MAX_ABS_FRAC * max(1.0, float(np.abs(ref).max())), what)

    def test_every_variant_matches_dynamic_network_architectures(self):
        for v in manifest()["variants"]:
            with self.subTest(variant=v["name"]):
                m = sarco.Model(os.path.join(DATA, v["model"]), backend="cpu")
                self.assertEqual((m.arch, m.folds), (v["arch"], 1))
                x = load_bin(v["input"], v["input_shape"])
                ref = load_bin(v["output"], v["output_shape"]).astype(np.float64)
                self.assertEqual(m.output_shape(x.shape), tuple(v["output_shape"]))
                self.check(m.forward(x), ref, v["name"])
                m.close()

    def test_folds(self):
        f = manifest()["fake"]
        m = sarco.Model(os.path.join(DATA, f["model"]), backend="cpu")
        self.assertEqual(m.folds, 2)
        self.assertEqual(m.config["folds"], ["fold_0", "fold_1"])
        x = load_bin(f["input"], f["input_shape"])
        for i, name in enumerate(f["outputs"]):
            self.check(m.forward(x, fold=i), load_bin(name, f["output_shape"]).astype(np.float64), name)
        np.testing.assert_array_equal(m.forward(x), m.forward(x, fold=0))
        with self.assertRaisesRegex(sarco.SarcoError, "fold 2 does not exist"):
            m.forward(x, fold=2)
        with self.assertRaises(TypeError):
            m.forward(x, fold=1.0)
        m.close()


@unittest.skipIf(sarco is None, _why_not)
class GenericFolds(unittest.TestCase):
    """Folds belong to the model file, not to nnU-Net: a two-fold UNETR file runs each fold exactly as
    the one-fold files of its checkpoints do."""

    def test_unetr_folds(self):
        from sarco import convert, torchfile
        conv = os.path.join(ROOT, "test", "data", "convert")
        with open(os.path.join(conv, "unetr_tiny.json")) as f:
            kw = json.load(f)["kwargs"]
        sd0 = convert.extract_state_dict(torchfile.load(os.path.join(conv, "unetr_tiny.pt")))
        sd1 = {k: (v * 0.5 if k.startswith("out.") else v) for k, v in sd0.items()}
        tmp = tempfile.mkdtemp(prefix="sarco-folds-")
        try:
            both, one1 = os.path.join(tmp, "both.safetensors"), os.path.join(tmp, "1.safetensors")
            s = convert.convert_folds("monai.UNETR", kw, [("a", sd0), ("b", sd1)], both)
            self.assertEqual(s["folds"], ["a", "b"])
            convert.convert("monai.UNETR", kw, sd1, one1)
            x = np.random.default_rng(5).standard_normal((1, 1, 32, 32, 32)).astype(np.float32)
            m, m1 = sarco.Model(both, backend="cpu"), sarco.Model(one1, backend="cpu")
            self.assertEqual((m.folds, m1.folds), (2, 1))
            y1 = m.forward(x, fold=1)
            np.testing.assert_array_equal(y1, m1.forward(x))
            self.assertFalse(np.array_equal(m.forward(x), y1))  # fold 0, the other weights
            m.close()
            m1.close()
            with self.assertRaisesRegex(convert.ConvertError, "distinct"):
                convert.convert_folds("monai.UNETR", kw, [("a", sd0), ("a", sd1)], both)
        finally:
            shutil.rmtree(tmp)


if __name__ == "__main__":
    unittest.main()
