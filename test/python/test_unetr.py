"""monai.UNETR through the Python binding (sarco.Model), against MONAI's own outputs.

The references in test/data/unetr/ come from test/gen_unetr_reference.py (MONAI's forward in
float64). Same bounds as test/test_unetr.c: relative L2 < 1e-4 and max abs < 1e-4 x max(1, max
|reference|) in FP32 on the CPU backend. numpy only; needs the shared library (SARCO_LIBRARY or
lib/libsarco.so; `make test-py` sets it).
"""
import json
import os
import struct
import sys
import tempfile
import unittest

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "python"))
DATA = os.path.join(ROOT, "test", "data", "unetr")

REL_L2_MAX = 1e-4
MAX_ABS_FRAC = 1e-4

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


def read_st(path):
    """(header dict, data bytes) of a safetensors file."""
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack("<Q", buf[:8])
    return json.loads(buf[8:8 + n]), buf[8 + n:]


def write_st(path, header, data):
    """Writes header's tensors with the bytes of their (old) data_offsets, laid out anew."""
    blobs, off, out = [], 0, {}
    for k, v in header.items():
        if k == "__metadata__":
            out[k] = v
            continue
        b, e = v["data_offsets"]
        blobs.append(data[b:e])
        out[k] = dict(v, data_offsets=[off, off + (e - b)])
        off += e - b
    text = json.dumps(out).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


@unittest.skipIf(sarco is None, _why_not or "")
class TestUnetr(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.man = manifest()
        cls.tmp = tempfile.TemporaryDirectory()
        try:
            sarco.Model(os.path.join(DATA, cls.man["variants"][0]["model"]), backend="cpu").close()
        except sarco.SarcoError as e:
            if "is not built in" in e.message:
                raise unittest.SkipTest(f"the library has no monai.UNETR: {e.message}")
            raise

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def variant(self, prefix):
        return next(v for v in self.man["variants"] if v["name"].startswith(prefix))

    def test_every_variant_matches_monai(self):
        for v in self.man["variants"]:
            with self.subTest(v["name"]):
                x = load_bin(v["input"], v["input_shape"])
                ref = load_bin(v["output"], v["output_shape"])
                with sarco.Model(os.path.join(DATA, v["model"]), backend="cpu") as m:
                    self.assertEqual(m.arch, "monai.UNETR")
                    self.assertEqual(m.config["kwargs"], v["kwargs"])
                    self.assertEqual(m.output_shape(x.shape), tuple(v["output_shape"]))
                    y = m.forward(x)
                d = y.astype(np.float64) - ref
                max_abs = float(np.abs(d).max())
                rel = float(np.linalg.norm(d) / np.linalg.norm(ref))
                bound = MAX_ABS_FRAC * max(1.0, float(np.abs(ref).max()))
                print(f"\n  {v['name']:30s} max abs {max_abs:.2e} (bound {bound:.1e}) rel L2 {rel:.2e}", file=sys.stderr)
                self.assertLess(rel, REL_L2_MAX)
                self.assertLess(max_abs, bound)

    def test_batch_items_are_independent(self):
        v = self.variant("e_")
        x = load_bin(v["input"], v["input_shape"])
        ref = load_bin(v["output"], v["output_shape"])
        x2 = np.concatenate([x[:, :, ::-1], x])  # a flipped copy first, then the reference input
        with sarco.Model(os.path.join(DATA, v["model"]), backend="cpu") as m:
            y = m.forward(x2)
            y_flip = m.forward(np.ascontiguousarray(x[:, :, ::-1]))
        self.assertLess(np.linalg.norm(y[1:] - ref) / np.linalg.norm(ref), REL_L2_MAX)
        np.testing.assert_allclose(y[:1], y_flip, rtol=0, atol=1e-5)
        self.assertGreater(np.linalg.norm(y[:1] - ref) / np.linalg.norm(ref), 0.05)

    def test_wrong_input_shape_names_both(self):
        v = self.variant("d_")  # img_size (32, 48, 16), one channel
        with sarco.Model(os.path.join(DATA, v["model"]), backend="cpu") as m:
            for shape in [(1, 1, 32, 48, 32), (1, 2, 32, 48, 16), (1, 1, 16, 48, 32)]:
                with self.assertRaises(sarco.SarcoError) as cm:
                    m.forward(np.zeros(shape, np.float32))
                self.assertEqual(cm.exception.status_name, "invalid argument")
                self.assertIn("(N, 1, 32, 48, 16)", cm.exception.message)
                self.assertIn(str(shape).replace(",)", ")"), cm.exception.message)

    def test_broken_files_fail_whole_naming_the_tensor(self):
        src = os.path.join(DATA, self.variant("b_")["model"])
        head, data = read_st(src)
        cases = []
        h = dict(head)
        del h["decoder4.conv_block.conv1.conv.weight"]
        cases.append(("missing", h, "decoder4.conv_block.conv1.conv.weight"))
        h = json.loads(json.dumps(head))
        h["vit.blocks.4.mlp.linear1.weight"]["shape"] = h["vit.blocks.4.mlp.linear1.weight"]["shape"][::-1]
        cases.append(("misshaped", h, "vit.blocks.4.mlp.linear1.weight"))
        h = dict(head)
        h["encoder9.layer.weight"] = head["vit.norm.weight"]
        cases.append(("unknown", h, "encoder9.layer.weight"))
        for label, h, name in cases:
            with self.subTest(label):
                path = os.path.join(self.tmp.name, label + ".safetensors")
                write_st(path, h, data)
                with self.assertRaises(sarco.SarcoError) as cm:
                    sarco.Model(path, backend="cpu")
                self.assertEqual(cm.exception.status_name, "bad format")
                self.assertIn(name, cm.exception.message)


if __name__ == "__main__":
    unittest.main()
