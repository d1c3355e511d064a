"""The demo model (weights/demo_thigh_unetr.safetensors) on the held-out phantom: accuracy against
the phantom's own truth, and the same labels as MONAI.

The phantom (python/sarco/phantom.HELD_OUT, seed 1000, 192 x 192 x 48 voxels of 0.8 x 0.8 x 2.5 mm)
is generated here, written as an int16 NIfTI, read back with libsarco and segmented with
sarco.Model.segment. Truth: the phantom's label map (Dice) and the exact volumes of its continuous
shapes. MONAI's labels for the same file come from test/gen_demo_reference.py
(test/data/demo/monai_seed1000.npz). Needs numpy and the shared library (SARCO_LIBRARY)."""
import os
import sys
import tempfile
import unittest

import numpy as np

import sarco
from sarco import phantom

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
MODEL = os.path.join(ROOT, "weights", "demo_thigh_unetr.safetensors")
REF = os.path.join(ROOT, "test", "data", "demo", f"monai_seed{phantom.HELD_OUT['seed']}.npz")

MIN_MEAN_DICE = 0.85
MAX_VOLUME_ERROR_PERCENT = 5.0
MAX_DIFFERENT_FRACTION = 1e-3  # voxels whose label differs from MONAI's (argmax ties, fp32 order)


class DemoModel(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        h = phantom.HELD_OUT
        cls.p = phantom.generate(h["seed"], h["shape"], h["spacing"])
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "ct.nii.gz")
            phantom.write_nifti(path, cls.p.image, cls.p.affine, dtype=np.int16)
            cls.ct = sarco.load_image(path)
        with sarco.Model(MODEL, backend="cpu") as m:
            cls.config = m.config
            cls.labels = np.asarray(m.segment(cls.ct).data)
        cls.metrics = sarco.evaluate(cls.labels, cls.p.labels, spacing=cls.p.spacing, labels=phantom.MUSCLES)
        vv = phantom.voxel_volume_ml(cls.p.affine)
        cls.err = {l: 100.0 * (np.count_nonzero(cls.labels == l) * vv - cls.p.volumes_ml[phantom.CLASSES[l]])
                   / cls.p.volumes_ml[phantom.CLASSES[l]] for l in phantom.MUSCLES}
        rows = [f"  {phantom.CLASSES[l]:<20} dice {cls.metrics[l]['dice']:.4f}  volume error {cls.err[l]:+6.2f} %"
                for l in phantom.MUSCLES]
        print("\ndemo model on the held-out phantom:\n" + "\n".join(rows), file=sys.stderr)

    def test_image_read_back_unchanged(self):
        # the int16 NIfTI holds the phantom exactly, on the phantom's grid
        np.testing.assert_array_equal(self.ct.data, self.p.image)
        np.testing.assert_allclose(self.ct.affine, self.p.affine, rtol=0, atol=1e-5)

    def test_model_is_the_demo_model(self):
        cfg = self.config
        self.assertEqual(cfg["arch"], "monai.UNETR")
        self.assertEqual(cfg["classes"], phantom.CLASSES)
        self.assertLessEqual(cfg["kwargs"]["hidden_size"], 192)
        self.assertLess(os.path.getsize(MODEL), 16e6)
        # the held-out seed was neither a training nor a validation phantom
        tr = cfg["training"]
        self.assertNotIn(phantom.HELD_OUT["seed"], tr["validation_seeds"])
        lo, hi = [int(v) for v in tr["data"].split()[2].split("..")]
        self.assertFalse(lo <= phantom.HELD_OUT["seed"] <= hi)

    def test_mean_dice(self):
        dice = [self.metrics[l]["dice"] for l in phantom.MUSCLES]
        self.assertEqual(len(dice), 6)
        self.assertGreater(float(np.mean(dice)), MIN_MEAN_DICE, dice)
        for l in phantom.MUSCLES:  # labels present in both: no empty-mask flags
            self.assertEqual(self.metrics[l]["flags"], [], phantom.CLASSES[l])

    def test_muscle_volumes_within_5_percent(self):
        for l in phantom.MUSCLES:
            with self.subTest(muscle=phantom.CLASSES[l]):
                self.assertLess(abs(self.err[l]), MAX_VOLUME_ERROR_PERCENT)

    def test_volume_report_agrees(self):
        # the pipeline's volume report counts the same voxels
        with sarco.Model(MODEL, backend="cpu") as m:
            rep = m.volumes(self.ct, self.ct.like(self.labels))
        vv = abs(np.linalg.det(self.ct.affine[:3, :3])) / 1000.0
        for e in rep["labels"]:
            self.assertEqual(e["name"], phantom.CLASSES[e["label"]])
            self.assertAlmostEqual(e["volume_ml"], np.count_nonzero(self.labels == e["label"]) * vv, places=6)
        self.assertEqual([g["name"] for g in rep["groups"]], list(phantom.GROUPS))

    def test_same_labels_as_monai(self):
        ref = np.load(REF)
        # the reference was made from this very phantom: same generator, same seed and grid
        self.assertEqual(int(ref["seed"]), self.p.seed)
        np.testing.assert_array_equal(ref["label_counts"],
                                      np.bincount(self.p.labels.reshape(-1), minlength=len(phantom.CLASSES)))
        self.assertEqual(int(ref["image_sum"]), int(self.p.image.astype(np.int64).sum()),
                         "the phantom generator changed: rerun test/gen_demo_reference.py")
        monai = ref["labels"]
        self.assertEqual(monai.shape, self.labels.shape)
        diff = np.count_nonzero(monai != self.labels)
        print(f"  labels differing from MONAI: {diff} of {monai.size} ({diff / monai.size:.2e})", file=sys.stderr)
        self.assertLess(diff / monai.size, MAX_DIFFERENT_FRACTION)
        # and the two agree on the muscles as a whole (an independent view of the same check)
        for i, l in enumerate(phantom.MUSCLES):
            a, b = monai == l, self.labels == l
            self.assertGreater(2 * np.count_nonzero(a & b) / (a.sum() + b.sum()), 0.999)
            self.assertAlmostEqual(self.metrics[l]["dice"], float(ref["dice"][i]), delta=1e-3)


if __name__ == "__main__":
    unittest.main()
