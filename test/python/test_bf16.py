"""The BF16 fast mode against FP32 on the demo model and its held-out phantoms: the share of voxels
whose label changes, the Dice between the two label maps per structure, and the volume difference
per muscle. Skipped (with the library's reason) on CPUs without AVX512-BF16/AMX, where BF16 is
refused; the refusal itself is tested in test/test_bf16.c on every machine. The CLI's --precision
flag is checked to reach the report."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np

import sarco
from sarco import phantom

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
MODEL = os.path.join(ROOT, "weights", "demo_thigh_unetr.safetensors")

MIN_EQUAL_FRACTION = 0.999     # labels equal to FP32's
MIN_DICE_VS_FP32 = 0.99        # per structure, BF16 labels against FP32 labels
MAX_VOLUME_DIFF_PERCENT = 1.0  # per structure, BF16 volume against FP32 volume
SEEDS = (1000, 1001)


def _bf16_reason():
    try:
        sarco.Context(backend="cpu", precision="bf16").close()
        return None
    except sarco.SarcoError as e:
        return str(e)


class BF16AgainstFP32(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        why = _bf16_reason()
        if why:
            raise unittest.SkipTest(f"SKIP bf16: {why}")
        h = phantom.HELD_OUT
        cls.rows = []
        with sarco.Model(MODEL, backend="cpu") as fp, sarco.Model(MODEL, backend="cpu", precision="bf16") as bf:
            for seed in SEEDS:
                p = phantom.generate(seed, h["shape"], h["spacing"])
                with tempfile.TemporaryDirectory() as d:
                    path = os.path.join(d, "ct.nii.gz")
                    phantom.write_nifti(path, p.image, p.affine, dtype=np.int16)
                    ct = sarco.load_image(path)
                a = np.asarray(fp.segment(ct).data)
                b = np.asarray(bf.segment(ct).data)
                cls.rows.append((seed, a, b))
        for seed, a, b in cls.rows:
            line = [f"seed {seed}: {100 * np.mean(a == b):.3f} % equal"]
            for lab in list(phantom.MUSCLES) + [phantom.CLASSES.index("femur")]:
                va, vb = int((a == lab).sum()), int((b == lab).sum())
                line.append(f"{phantom.CLASSES[lab]} {100 * (vb - va) / max(va, 1):+.2f}%")
            print("\nbf16 vs fp32 " + ", ".join(line), file=sys.stderr)

    def test_labels_mostly_equal(self):
        for seed, a, b in self.rows:
            self.assertGreaterEqual(np.mean(a == b), MIN_EQUAL_FRACTION, f"seed {seed}")
            self.assertLess(np.mean(a == b), 1.0, f"seed {seed}: BF16 gave FP32's labels exactly: did it run?")

    def test_dice_and_volumes(self):
        for seed, a, b in self.rows:
            for lab in range(1, int(max(a.max(), b.max())) + 1):
                pa, pb = a == lab, b == lab
                if not pa.any():
                    continue
                dice = 2 * np.logical_and(pa, pb).sum() / (pa.sum() + pb.sum())
                self.assertGreaterEqual(dice, MIN_DICE_VS_FP32, f"seed {seed} label {lab}")
                self.assertLess(abs(pb.sum() - pa.sum()) / pa.sum() * 100, MAX_VOLUME_DIFF_PERCENT,
                                f"seed {seed} label {lab}")

    def test_cli_precision_reaches_report(self):
        cli = os.environ.get("SARCO_CLI", os.path.join(ROOT, "build", "sarco"))
        h = phantom.HELD_OUT
        p = phantom.generate(SEEDS[0], (96, 96, 12), (1.6, 1.6, 4.0))
        with tempfile.TemporaryDirectory() as d:
            ct = os.path.join(d, "ct.nii.gz")
            phantom.write_nifti(ct, p.image, p.affine, dtype=np.int16)
            out = subprocess.run([cli, "segment", "--model", MODEL, "--input", ct, "--output",
                                  os.path.join(d, "l.nii.gz"), "--backend", "cpu", "--precision", "bf16"],
                                 capture_output=True, text=True)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertEqual(json.loads(out.stdout)["settings"]["precision"], "bf16")
            bad = subprocess.run([cli, "segment", "--model", MODEL, "--input", ct, "--output",
                                  os.path.join(d, "l2.nii.gz"), "--precision", "int8"], capture_output=True, text=True)
            self.assertEqual(bad.returncode, 2)
            self.assertIn("--precision must be", bad.stderr)


if __name__ == "__main__":
    unittest.main()
