"""The pipeline from Python (python/sarco/pipeline.py) and the `sarco segment` CLI.

MONAI references come from test/gen_pipeline_reference.py (test/data/pipeline/); the model is the
tiny UNETR of test/data/unetr/, once as it is and once with a pipeline section added to its
sarco.config (rewritten here with numpy only). Needs the shared library (SARCO_LIBRARY)."""
import json
import os
import shutil
import struct
import subprocess
import tempfile
import unittest

import numpy as np

import sarco
from sarco import pipeline as P
from _testutil import find_cli, nifti1_header

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
PDATA = os.path.join(ROOT, "test", "data", "pipeline")
UNETR = os.path.join(ROOT, "test", "data", "unetr", "a_conv_instance_res.safetensors")

PIPE_CONFIG = {
    "classes": ["background", "muscle", "bone"],
    "groups": {"all": [1, 2], "bone_only": [2]},
    "preprocess": {"hu_window": [-57, 164], "scale_to": [0, 1], "clip": True, "gamma": 2.0,
                   "crop_foreground": True, "target_spacing_mm": [1.5, 1.5, 2.0], "axcodes": None},
    "inference": {"roi": [32, 32, 32], "overlap": 0.25, "mode": "gaussian", "sigma_scale": 0.125,
                  "sw_batch_size": 1},
}


def hashed_input(shape):
    i = np.arange(int(np.prod(shape)), dtype=np.uint64)
    v = (i * np.uint64(2654435761)) % np.uint64(1 << 32)
    return (v.astype(np.float64) / 4294967296.0).astype(np.float32).reshape(shape)


def with_config(src, dst, extra):
    """Copies a safetensors model file with `extra` merged into its sarco.config."""
    with open(src, "rb") as f:
        b = f.read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    cfg = json.loads(header["__metadata__"]["sarco.config"])
    cfg.update(extra)
    header["__metadata__"]["sarco.config"] = json.dumps(cfg)
    hb = json.dumps(header).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb + b[8 + n:])


def write_nifti(path, data, affine):
    """A minimal NIfTI-1 (.nii) writer: int16 or float32 data indexed [x, y, z], sform = affine."""
    dt = {np.dtype(np.int16): (4, 16), np.dtype(np.float32): (16, 32)}[data.dtype]
    dims = [3] + list(data.shape) + [1] * (7 - data.ndim)
    sp = np.sqrt((affine[:3, :3] ** 2).sum(0))
    with open(path, "wb") as f:
        f.write(nifti1_header(dims, dt[0], dt[1], [1.0, *sp, 0, 0, 0, 0], affine[:3, :].reshape(-1)))
        f.write(np.asfortranarray(data).tobytes(order="F"))


class PipelineTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="sarco_pipeline_")
        cls.pipe_model = os.path.join(cls.tmp, "pipe.safetensors")
        with_config(UNETR, cls.pipe_model, PIPE_CONFIG)
        cls.ct = np.load(os.path.join(PDATA, "ct.npy"))
        cls.affine = np.load(os.path.join(PDATA, "ct_affine.npy"))
        cls.ct_path = os.path.join(cls.tmp, "ct.nii")
        write_nifti(cls.ct_path, cls.ct, cls.affine)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_sliding_window_vs_monai(self):
        with sarco.Model(UNETR) as m:
            for name, size, overlap, mode in [("a_gauss", (40, 36, 28), 0.25, "gaussian"),
                                              ("b_small", (20, 40, 24), 0.5, "constant")]:
                x = hashed_input((1, 1) + size)
                y = P.sliding_window(m, x, overlap=overlap, mode=mode)
                ref = np.load(os.path.join(PDATA, f"unetr_{name}.npy"))[None]
                self.assertEqual(y.shape, ref.shape)
                err = np.abs(y - ref).max() / np.abs(ref).max()
                self.assertLess(err, 1e-4, name)
                if hasattr(m, "sliding_window"):  # the Model method, once hooked up
                    np.testing.assert_array_equal(m.sliding_window(x, overlap=overlap, mode=mode), y)

    def test_load_image(self):
        im = P.load_image(self.ct_path)
        self.assertEqual(im.shape, self.ct.shape)
        np.testing.assert_array_equal(im.data, self.ct.astype(np.float32))
        np.testing.assert_allclose(im.affine, self.affine, atol=1e-5)
        np.testing.assert_allclose(im.spacing, [0.83, 1.07, 2.53], atol=1e-6)
        with self.assertRaises(sarco.SarcoError):
            P.load_image(os.path.join(self.tmp, "missing.nii"))

    def test_segment_without_preprocessing_is_argmax_of_sliding_window(self):
        # no "preprocess" in the config: segment() must be argmax(sliding_window(image[None, None]))
        # with the network's first spatial axis = the image's x (MONAI's axis order for NIfTI)
        data = (hashed_input((37, 29, 35)) * 2 - 1).astype(np.float32)
        im = sarco.pipeline.Image(data, spacing=(1.0, 1.2, 0.9))
        with sarco.Model(UNETR) as m:
            lab = P.segment(m, im, mode="gaussian", overlap=0.5)
            logits = P.sliding_window(m, data[None, None], overlap=0.5, mode="gaussian")
        np.testing.assert_array_equal(lab.data, np.argmax(logits[0], axis=0).astype(np.uint16))
        self.assertEqual(lab.data.dtype, np.uint16)

    def test_segment_with_preprocessing(self):
        im = P.load_image(self.ct_path)
        with sarco.Model(self.pipe_model) as m:
            lab, info = P.segment(m, im, info=True)
            rep = P.volumes(m, im, lab, height_m=1.8)
        box = np.load(os.path.join(PDATA, "pp_box.npy"))
        self.assertEqual(info["crop_start"], list(box[:3]))
        self.assertEqual(info["crop_end"], list(box[3:]))
        self.assertEqual(info["model_dims"], list(np.load(os.path.join(PDATA, "pp_spacing.npy")).shape))
        self.assertEqual((info["mode"], info["classes"], info["roi"]), ("gaussian", 3, [32, 32, 32]))
        outside = np.ones(lab.shape, bool)
        outside[box[0]:box[3], box[1]:box[4], box[2]:box[5]] = False
        self.assertEqual(int(lab.data[outside].max()), 0)
        self.assertLessEqual(int(lab.data.max()), 2)
        # volumes: counts, |det(affine)|, groups, HU statistics, height
        det = abs(np.linalg.det(im.affine[:3, :3]))  # the affine as stored (float32 in NIfTI-1)
        for e in rep["labels"]:
            mask = lab.data == e["label"]
            self.assertEqual(e["voxels"], int(mask.sum()))
            self.assertAlmostEqual(e["volume_ml"], mask.sum() * det / 1000, places=9)
            self.assertAlmostEqual(e["volume_index_ml_per_m2"], e["volume_ml"] / 1.8 ** 2, places=9)
            if mask.any():
                self.assertAlmostEqual(e["hu_mean"], float(self.ct[mask].mean()), places=6)
                self.assertAlmostEqual(e["hu_sd"], float(self.ct[mask].std()), places=5)
        self.assertEqual([e["name"] for e in rep["labels"]], ["muscle", "bone"])
        g = {e["name"]: e for e in rep["groups"]}
        self.assertEqual(g["all"]["voxels"], sum(e["voxels"] for e in rep["labels"]))
        self.assertEqual(g["bone_only"]["voxels"], rep["labels"][1]["voxels"])
        # labels round-trip through NIfTI
        out = os.path.join(self.tmp, "lab.nii.gz")
        P.save_labels(out, lab)
        np.testing.assert_array_equal(P.load_image(out).data, lab.data.astype(np.float32))

    def test_argument_errors(self):
        with sarco.Model(UNETR) as m:
            with self.assertRaises(ValueError):
                P.sliding_window(m, np.zeros((32, 32, 32), np.float32))
            with self.assertRaises(ValueError):
                P.sliding_window(m, np.zeros((1, 1, 8, 8, 8), np.float32), mode="median")
            with self.assertRaises(ValueError):
                P.sliding_window(m, np.zeros((1, 1, 8, 8, 8), np.float32), overlap=1.0)
            with self.assertRaises(sarco.SarcoError):  # the model takes one channel
                P.sliding_window(m, np.zeros((1, 2, 8, 8, 8), np.float32))

    def test_cli(self):
        cli = find_cli()
        if not cli:
            self.skipTest("sarco CLI not built (set SARCO_CLI)")
        out = os.path.join(self.tmp, "cli_lab.nii.gz")
        rep = os.path.join(self.tmp, "cli.json")
        r = subprocess.run([cli, "segment", "--model", self.pipe_model, "--input", self.ct_path, "--output", out,
                            "--report", rep, "--backend", "cpu", "--height-m", "1.8"],
                           capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(rep) as f:
            j = json.load(f)
        for k in ("input", "model", "settings", "preprocess", "timing_s", "labels", "groups"):
            self.assertIn(k, j)
        self.assertEqual(j["input"]["dims"], list(self.ct.shape))
        self.assertEqual(j["settings"]["mode"], "gaussian")
        self.assertEqual([e["name"] for e in j["labels"]], ["muscle", "bone"])
        im = P.load_image(self.ct_path)
        with sarco.Model(self.pipe_model) as m:
            lab = P.segment(m, im)
            vol = P.volumes(m, im, lab, height_m=1.8)
        np.testing.assert_array_equal(P.load_image(out).data, lab.data.astype(np.float32))
        for a, b in zip(j["labels"], vol["labels"]):
            self.assertEqual(a["voxels"], b["voxels"])
            self.assertAlmostEqual(a["volume_ml"], b["volume_ml"], places=6)
        # stdout report without --report; settings overridden on the command line
        r = subprocess.run([cli, "segment", "--model", self.pipe_model, "--input", self.ct_path, "--output", out,
                            "--mode", "constant", "--overlap", "0.5"], capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stderr)
        j = json.loads(r.stdout)
        self.assertEqual((j["settings"]["mode"], j["settings"]["overlap"]), ("constant", 0.5))
        # exit codes: 2 for bad input or usage
        for args in (["--model", self.pipe_model, "--input", os.path.join(self.tmp, "nope.nii"), "--output", out],
                     ["--model", self.pipe_model, "--input", self.ct_path, "--output", out, "--mode", "median"],
                     ["--model", self.pipe_model, "--input", self.ct_path],
                     ["--model", self.ct_path, "--input", self.ct_path, "--output", out]):
            r = subprocess.run([cli, "segment"] + args, capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertTrue(r.stderr.strip())


if __name__ == "__main__":
    unittest.main()
