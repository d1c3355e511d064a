"""The ctypes binding: sarco.version, sarco.Model, sarco.Context, sarco.SarcoError. numpy only.

Needs the shared library (SARCO_LIBRARY or lib/libsarco.so; `make test-py` sets it)."""
import gc
import json
import os
import re
import struct
import sys
import tempfile
import unittest

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "python"))

import sarco  # noqa: E402
from sarco import convert, safetensors  # noqa: E402

HEADER = os.path.join(ROOT, "include", "sarco", "sarco.h")
UNETR_DATA = os.path.join(ROOT, "test", "data", "unetr")
ST_DATA = os.path.join(ROOT, "test", "data", "safetensors")
CONVERT_DATA = os.path.join(ROOT, "test", "data", "convert")

# test/test_unetr.c's bounds for FP32 on the CPU backend
REL_L2_MAX = 1e-4
MAX_ABS_FRAC = 1e-4  # of max(1, max |reference|)


def header_text():
    with open(HEADER) as f:
        return f.read()


def status_codes():
    """SARCO_ERR_* name -> number, from the public header."""
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"\b(SARCO_(?:OK|ERR_\w+))\s*=\s*(\d+)", header_text())}


def compare(got, ref):
    got = got.astype(np.float64)
    ref = ref.astype(np.float64)
    max_abs = float(np.abs(got - ref).max())
    rel = float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-30))
    return max_abs, rel, MAX_ABS_FRAC * max(1.0, float(np.abs(ref).max()))


def write_st(path, tensors, metadata):
    safetensors.write(path, tensors, metadata)
    return path


class Library(unittest.TestCase):
    def test_version_matches_the_header(self):
        v = {k: int(n) for k, n in re.findall(r"#define SARCO_VERSION_(MAJOR|MINOR|PATCH) (\d+)", header_text())}
        self.assertEqual(sorted(v), ["MAJOR", "MINOR", "PATCH"])
        self.assertEqual(sarco.version(), f"{v['MAJOR']}.{v['MINOR']}.{v['PATCH']}")
        self.assertEqual(sarco.version_number(), v["MAJOR"] * 10000 + v["MINOR"] * 100 + v["PATCH"])

    def test_cuda_backend_either_runs_or_says_unavailable(self):
        try:
            ctx = sarco.Context(backend="cuda")
        except sarco.SarcoError as e:
            self.assertEqual(e.status, status_codes()["SARCO_ERR_BACKEND_UNAVAILABLE"])
            self.assertEqual(e.status_name, "backend unavailable")
            self.assertTrue(e.message, "the library gave no reason")
            self.assertIsInstance(e, RuntimeError)
            print(f"\n  cuda unavailable: {e.message}", file=sys.stderr)
            return
        with ctx:
            self.assertEqual(ctx.backend, "cuda")

    def test_auto_and_cpu_contexts(self):
        with sarco.Context(backend="cpu", threads=1) as c:
            self.assertEqual(c.backend, "cpu")
        with sarco.Context(backend="auto") as c:
            self.assertIn(c.backend, ("cpu", "cuda"))
            if c.backend == "cpu":
                self.assertIn("CUDA", c.note)  # AUTO says why it fell back
        self.assertIsNone(c.handle)
        with self.assertRaisesRegex(ValueError, "backend must be one of"):
            sarco.Context(backend="gpu")
        with self.assertRaisesRegex(ValueError, "threads"):
            sarco.Model("x.safetensors", threads=-1)


class LoadErrors(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.codes = status_codes()

    def tearDown(self):
        self.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.tmp.name, name)

    def assertLoadFails(self, path, status, text):
        with self.assertRaises(sarco.SarcoError) as cm:
            sarco.Model(path)
        e = cm.exception
        self.assertEqual(e.status, self.codes[status], f"{path}: got {e.status_name}: {e.message}")
        self.assertIn(text, e.message)
        self.assertIn(e.message, str(e))
        return e

    def test_missing_file(self):
        p = self.path("no_such_model.safetensors")
        e = self.assertLoadFails(p, "SARCO_ERR_IO", p)
        self.assertEqual(e.status_name, "I/O error")

    def test_own_corrupt_files(self):
        with open(self.path("short"), "wb") as f:
            f.write(b"\x01\x02\x03")
        with open(self.path("past_end"), "wb") as f:
            f.write(struct.pack("<Q", 1000) + b"{}")
        with open(self.path("not_json"), "wb") as f:
            f.write(struct.pack("<Q", 8) + b"{nope:1}")
        for name in ("short", "past_end", "not_json"):
            with self.subTest(name):
                self.assertLoadFails(self.path(name), "SARCO_ERR_BAD_FORMAT", name)

    def test_file_without_sarco_config(self):
        p = write_st(self.path("plain.safetensors"), {"w": np.ones(3, np.float32)}, {"format": "pt"})
        self.assertLoadFails(p, "SARCO_ERR_BAD_FORMAT", "sarco.config")
        p = write_st(self.path("bad_cfg.safetensors"), {"w": np.ones(3, np.float32)}, {"sarco.config": "[1, 2"})
        self.assertLoadFails(p, "SARCO_ERR_BAD_FORMAT", "sarco.config")
        p = write_st(self.path("arch.safetensors"), {"w": np.ones(3, np.float32)},
                     {"sarco.config": json.dumps({"arch": "nobody.Net", "kwargs": {}})})
        self.assertLoadFails(p, "SARCO_ERR_UNSUPPORTED", "nobody.Net")

    @unittest.skipUnless(os.path.exists(os.path.join(ST_DATA, "manifest.tsv")), "test/data/safetensors/ absent")
    def test_safetensors_suite_reaches_python_with_status_and_message(self):
        rows = 0
        with open(os.path.join(ST_DATA, "manifest.tsv")) as f:
            for line in f:
                if line.startswith("#") or not line.strip():
                    continue
                name, status, substring = line.rstrip("\n").split("\t")[:3]
                path = os.path.join(ST_DATA, name)
                with self.subTest(name):
                    if status == "SARCO_OK":  # a valid file, but not a model we have
                        with open(path, "rb") as fh:
                            n = struct.unpack("<Q", fh.read(8))[0]
                            meta = json.loads(fh.read(n)).get("__metadata__") or {}
                        if "sarco.config" in meta:
                            arch = json.loads(meta["sarco.config"])["arch"]
                            self.assertLoadFails(path, "SARCO_ERR_UNSUPPORTED", f'"{arch}" is not built in')
                        else:
                            self.assertLoadFails(path, "SARCO_ERR_BAD_FORMAT", "sarco.config")
                    else:
                        self.assertLoadFails(path, status, "" if substring == "-" else substring)
                rows += 1
        self.assertGreater(rows, 20)


def _unetr_manifest():
    p = os.path.join(UNETR_DATA, "manifest.json")
    if not os.path.exists(p):
        return None
    with open(p) as f:
        return json.load(f)


class Forward(unittest.TestCase):
    """Model.forward against MONAI's outputs."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.tiny = os.path.join(cls.tmp.name, "unetr_tiny.safetensors")
        with open(os.path.join(CONVERT_DATA, "unetr_tiny.json")) as f:
            cls.tiny_ref = json.load(f)
        convert.convert("monai.UNETR", cls.tiny_ref["kwargs"], os.path.join(CONVERT_DATA, "unetr_tiny.pt"), cls.tiny,
                        {"classes": ["background", "a", "b"]}, reader="builtin")
        fw = cls.tiny_ref["forward"]
        cls.x = np.random.RandomState(fw["seed"]).standard_normal(fw["input_shape"]).astype(np.float32)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def open_tiny(self, **kw):
        try:
            return sarco.Model(self.tiny, **kw)
        except sarco.SarcoError as e:
            if e.status == status_codes()["SARCO_ERR_UNSUPPORTED"] and "not built in" in e.message:
                self.skipTest(f"the library has no monai.UNETR yet: {e.message}")
            raise

    def test_converted_checkpoint_matches_monai(self):
        with self.open_tiny() as m:
            self.assertEqual(m.arch, "monai.UNETR")
            self.assertEqual(m.backend, "cpu")
            self.assertEqual(m.config["arch"], "monai.UNETR")
            self.assertEqual(m.config["classes"], ["background", "a", "b"])
            self.assertEqual(m.config["kwargs"]["feature_size"], self.tiny_ref["kwargs"]["feature_size"])
            y = m.forward(self.x)
        ref = np.load(os.path.join(CONVERT_DATA, "unetr_forward.npz"))
        self.assertEqual(list(y.shape), self.tiny_ref["forward"]["output_shape"])
        self.assertEqual(y.dtype, np.float32)
        max_abs, rel, bound = compare(y[:, :, ::2, ::2, ::2], ref["y_sub"])
        print(f"\n  converted unetr_tiny: max_abs {max_abs:.3g} (bound {bound:.3g}), rel_l2 {rel:.3g}", file=sys.stderr)
        self.assertLess(max_abs, bound)
        self.assertLess(rel, REL_L2_MAX)
        self.assertAlmostEqual(float(np.abs(y.astype(np.float64)).sum()), float(ref["y_abs_sum"]),
                               delta=1e-4 * float(ref["y_abs_sum"]))
        self.assertGreaterEqual(np.mean(y.argmax(1) == ref["argmax"]), 0.999)

    @unittest.skipIf(_unetr_manifest() is None, "test/data/unetr/manifest.json absent (made by "
                                                "test/gen_unetr_reference.py)")
    def test_unetr_reference_models(self):
        man = _unetr_manifest()
        self.assertGreaterEqual(len(man["variants"]), 1)
        for v in man["variants"]:
            with self.subTest(v["name"]):
                x = np.fromfile(os.path.join(UNETR_DATA, v["input"]), dtype="<f4").reshape(v["input_shape"])
                ref = np.fromfile(os.path.join(UNETR_DATA, v["output"]), dtype="<f4").reshape(v["output_shape"])
                with sarco.Model(os.path.join(UNETR_DATA, v["model"]), backend="cpu") as m:
                    self.assertEqual(m.arch, "monai.UNETR")
                    self.assertEqual(m.output_shape(x.shape), tuple(v["output_shape"]))
                    y = m.forward(x)
                max_abs, rel, bound = compare(y, ref)
                print(f"\n  {v['name']}: max_abs {max_abs:.3g} (bound {bound:.3g}), rel_l2 {rel:.3g}", file=sys.stderr)
                self.assertLess(max_abs, bound)
                self.assertLess(rel, REL_L2_MAX)

    def test_input_conversion_and_checks(self):
        with self.open_tiny(threads=1) as m:
            y = m.forward(self.x)
            # float64, non-contiguous (a doubled array sliced back) gives the same bits
            wide = np.repeat(self.x.astype(np.float64), 2, axis=4)[..., ::2]
            self.assertFalse(wide.flags.c_contiguous)
            np.testing.assert_array_equal(m.forward(wide), y)
            np.testing.assert_array_equal(m(self.x.astype(np.float16).astype(np.float32)),
                                          m.forward(self.x.astype(np.float16)))
            with self.assertRaisesRegex(ValueError, "batch"):
                m.forward(self.x[0, 0])  # 3-D: no batch or channel axis
            with self.assertRaises(sarco.SarcoError) as cm:
                m.forward(self.x[0])  # 4-D reads as a 2-D (N, C, H, W) input: the 3-D model refuses it
            self.assertEqual(cm.exception.status, status_codes()["SARCO_ERR_INVALID_ARGUMENT"])
            with self.assertRaisesRegex(TypeError, "dtype"):
                m.forward(self.x > 0)
            with self.assertRaises(sarco.SarcoError) as cm:
                m.forward(np.zeros((1, 2, 32, 32, 32), np.float32))  # two channels into a 1-channel model
            self.assertEqual(cm.exception.status, status_codes()["SARCO_ERR_INVALID_ARGUMENT"])
            self.assertTrue(cm.exception.message)
        with self.assertRaisesRegex(ValueError, "closed"):
            m.forward(self.x)
        m.close()  # twice is fine

    def test_shared_context_outlives_its_models(self):
        ctx = sarco.Context(backend="cpu")
        try:
            a = sarco.Model(self.tiny, context=ctx)
        except sarco.SarcoError as e:
            ctx.close()
            if "not built in" in e.message:
                self.skipTest(e.message)
            raise
        b = sarco.Model(self.tiny, context=ctx)
        ctx.close()  # deferred: two models still use it
        self.assertIsNotNone(ctx.handle)
        ya = a.forward(self.x)
        a.close()
        self.assertIsNotNone(ctx.handle)
        np.testing.assert_array_equal(b.forward(self.x), ya)
        del b  # __del__ frees the model, then the context
        gc.collect()
        self.assertIsNone(ctx.handle)


if __name__ == "__main__":
    unittest.main()
