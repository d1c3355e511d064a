"""The ultrasound phantom (sarco.us_phantom) and the ultrasound measures on it: determinism, the
continuous truth against closed forms, the phantom's own mask measured within the stated
discretisation bounds (python API and `sarco measure`), sarco.measure_ultrasound against a numpy
re-implementation of the definitions, and the refusal without a pixel spacing. numpy only."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np

import sarco
from sarco import us_phantom

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _testutil import find_cli  # noqa: E402

SEEDS = [0, 1, 2, 3, us_phantom.HELD_OUT]


def numpy_measures(lab, img, sp, label):
    """docs/measure.md's definitions, written again with numpy (EDT and components aside)."""
    m = lab == label
    rows, cols = np.nonzero(m)
    r0, r1, c0, c1 = rows.min(), rows.max(), cols.min(), cols.max()
    ext = []
    for c in range(c0, c1 + 1):
        rr = np.nonzero(m[:, c])[0]
        ext.append((rr.max() - rr.min() + 1) * sp[0] if rr.size else 0.0)
    ext = np.array(ext)
    w = c1 - c0 + 1
    centre = np.arange(w) + 0.5
    sel = (centre >= w / 3) & (centre <= 2 * w / 3) & (ext > 0)
    v = img[m].astype(np.float64)
    return {"csa_mm2": m.sum() * sp[0] * sp[1], "mt_mm": float(np.median(ext[sel])), "mt_max_mm": ext.max(),
            "mt_columns": int(sel.sum()), "bbox": (r0, r1, c0, c1), "echo_mean": v.mean(), "echo_sd": v.std()}


class TestUsPhantom(unittest.TestCase):
    def test_deterministic(self):
        a, b = us_phantom.generate(7), us_phantom.generate(7)
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.labels, b.labels)
        self.assertEqual(a.truth, b.truth)
        self.assertEqual(a.spacing, b.spacing)
        c = us_phantom.generate(8)
        self.assertFalse(np.array_equal(a.image, c.image))
        self.assertEqual(a.image.dtype, np.uint8)
        self.assertEqual(set(np.unique(a.labels)), {0, 1})

    def test_truth_closed_forms(self):
        # an ellipse: area pi a b, MT = the chord at a/6 = 2 b sqrt(35/36), mt_max = 2 b, width 2 a
        t = us_phantom.outline_truth(20.0, 15.0, 14.0, 8.0, 0.0, 0.0, 0.0, 0.0)
        self.assertAlmostEqual(t["csa_mm2"], np.pi * 14 * 8, places=9)
        self.assertAlmostEqual(t["mt_mm"], 16 * np.sqrt(35 / 36), delta=1e-4)
        self.assertAlmostEqual(t["mt_max_mm"], 16.0, delta=1e-4)
        self.assertAlmostEqual(t["width_mm"], 28.0, delta=1e-6)
        # with harmonics: the closed-form area equals the 20000-vertex polygon's
        a, b, c2, p2, c3, p3 = 12.0, 7.0, 0.04, 1.0, -0.03, 2.0
        tt = np.linspace(0, 2 * np.pi, 200000, endpoint=False)
        r = 1 + c2 * np.cos(2 * tt + p2) + c3 * np.cos(3 * tt + p3)
        x, y = a * r * np.cos(tt), b * r * np.sin(tt)
        poly = 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
        t = us_phantom.outline_truth(0, 0, a, b, c2, p2, c3, p3)
        self.assertAlmostEqual(t["csa_mm2"], poly, delta=1e-6 * poly)

    def test_own_mask_within_bounds(self):
        worst = {"csa": 0.0, "mt": 0.0}
        for seed in SEEDS:
            p = us_phantom.generate(seed)
            t, b = p.truth, p.truth["bounds"]
            m = sarco.measure_ultrasound(p.labels, p.image, p.spacing)
            self.assertEqual(len(m), 1)
            m = m[0]
            self.assertEqual(m["label"], 1)
            self.assertEqual(m["components"], 1)
            self.assertEqual(m["flags"], [])
            self.assertLessEqual(abs(m["csa_mm2"] - t["csa_mm2"]), b["csa_mm2"], seed)
            self.assertLessEqual(abs(m["mt_mm"] - t["mt_mm"]), b["mt_mm"], seed)
            self.assertLessEqual(abs(m["mt_max_mm"] - t["mt_max_mm"]), b["mt_max_mm"], seed)
            self.assertLessEqual(abs(m["bbox"]["width_mm"] - t["width_mm"]), 2 * p.spacing[1], seed)
            worst["csa"] = max(worst["csa"], abs(m["csa_mm2"] / t["csa_mm2"] - 1) * 100)
            worst["mt"] = max(worst["mt"], abs(m["mt_mm"] / t["mt_mm"] - 1) * 100)
            # the definitions, re-implemented
            ref = numpy_measures(p.labels, p.image, p.spacing, 1)
            self.assertAlmostEqual(m["csa_mm2"], ref["csa_mm2"], delta=1e-9)
            self.assertAlmostEqual(m["mt_mm"], ref["mt_mm"], delta=1e-12)
            self.assertAlmostEqual(m["mt_max_mm"], ref["mt_max_mm"], delta=1e-12)
            self.assertEqual(m["mt_columns"], ref["mt_columns"])
            bb = m["bbox"]
            self.assertEqual((bb["row_min"], bb["row_max"], bb["col_min"], bb["col_max"]), ref["bbox"])
            self.assertAlmostEqual(m["echo_mean"], ref["echo_mean"], delta=1e-9)
            self.assertAlmostEqual(m["echo_sd"], ref["echo_sd"], delta=1e-9)
        print(f"\nphantom masks vs continuous truth, {len(SEEDS)} seeds: CSA within {worst['csa']:.3f} %, "
              f"MT within {worst['mt']:.3f} %", file=sys.stderr)

    def test_refused_without_spacing(self):
        p = us_phantom.generate(1)
        with self.assertRaises(sarco.SarcoError) as e:
            sarco.measure_ultrasound(p.labels, p.image, None)
        self.assertIn("--pixel-spacing-mm", e.exception.message)
        self.assertEqual(e.exception.status, 1)
        with self.assertRaises(ValueError):
            sarco.measure_ultrasound(p.labels, p.image, (0.1,))

    def test_picture_and_cli(self):
        p = us_phantom.generate(us_phantom.HELD_OUT)
        tmp = tempfile.mkdtemp(prefix="sarco_us_")
        us, lab, truth = us_phantom.write(p, tmp)
        pic = sarco.load_picture(us)
        self.assertEqual(pic.data.shape, (1,) + p.image.shape)
        np.testing.assert_array_equal(pic.data[0], p.image)
        self.assertEqual(pic.spacing, p.spacing)  # pHYs holds 1000 / spacing exactly
        # Picture in, luma used: the same echo as the grey array
        a = sarco.measure_ultrasound(p.labels, pic, p.spacing)[0]
        b = sarco.measure_ultrasound(p.labels, p.image, p.spacing)[0]
        self.assertEqual(a, b)
        cli = find_cli()
        if not cli:
            self.skipTest("sarco CLI not built (set SARCO_CLI)")
        out = json.loads(subprocess.run([cli, "measure", "--labels", lab, "--image", us], check=True,
                                        capture_output=True, text=True).stdout)
        self.assertEqual(out["measured_as"], "2d-ultrasound")
        np.testing.assert_allclose(out["pixel_spacing_mm"], p.spacing, rtol=1e-9)  # JSON keeps 10 digits
        self.assertEqual(out["pixel_spacing_from"], lab)
        u = out["labels"][0]["ultrasound"]
        for k in ("csa_mm2", "mt_mm", "mt_max_mm", "inscribed_diameter_mm", "echo_mean", "echo_sd"):
            self.assertAlmostEqual(u[k], b[k], delta=1e-8 * max(1.0, abs(b[k])), msg=k)
        t = json.load(open(truth))["truth"]
        self.assertLessEqual(abs(u["csa_mm2"] - t["csa_mm2"]), t["bounds"]["csa_mm2"])
        # an explicit spacing wins, and scales CSA by its product
        out2 = json.loads(subprocess.run([cli, "measure", "--labels", lab, "--image", us, "--pixel-spacing-mm",
                                          "0.1", "0.2"], check=True, capture_output=True, text=True).stdout)
        self.assertEqual(out2["pixel_spacing_from"], "--pixel-spacing-mm")
        self.assertAlmostEqual(out2["labels"][0]["ultrasound"]["csa_mm2"], u["pixels"] * 0.02, delta=1e-9)
        # files without pHYs and no --pixel-spacing-mm: refused, exit 2, the message says what to pass
        us_phantom.write_png(os.path.join(tmp, "us_nophys.png"), p.image)
        us_phantom.write_png(os.path.join(tmp, "lab_nophys.png"), p.labels)
        r = subprocess.run([cli, "measure", "--labels", os.path.join(tmp, "lab_nophys.png"), "--image",
                            os.path.join(tmp, "us_nophys.png")], capture_output=True, text=True)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("--pixel-spacing-mm", r.stderr)
        self.assertEqual(r.stdout, "")
        # labels without pHYs take the image's spacing (nnU-Net writes label PNGs without one)
        out3 = json.loads(subprocess.run([cli, "measure", "--labels", os.path.join(tmp, "lab_nophys.png"), "--image",
                                          us], check=True, capture_output=True, text=True).stdout)
        self.assertEqual(out3["pixel_spacing_from"], us)
        self.assertAlmostEqual(out3["labels"][0]["ultrasound"]["mt_mm"], u["mt_mm"], delta=1e-12)

    def test_colour_jpeg_echo_is_luma(self):
        """A colour JPEG frame: the echo is the BT.601 luma of its decoded RGB, in the API and the CLI."""
        jpg = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "jpeg", "good_us_frame.jpg")
        pic = sarco.load_picture(jpg)
        self.assertEqual(pic.channels, 3)
        lab = np.zeros(pic.data.shape[1:], np.uint8)
        lab[20:40, 10:70] = 1
        lab[2:6, 4:40] = 2  # the yellow bar: colour, so luma differs from every channel
        luma = pic.luma()
        m = sarco.measure_ultrasound(lab, pic, (0.1, 0.1))
        for e in m:
            v = luma[lab == e["label"]].astype(np.float64)
            self.assertAlmostEqual(e["echo_mean"], v.mean(), delta=1e-9)
            self.assertAlmostEqual(e["echo_sd"], v.std(), delta=1e-9)
        self.assertNotAlmostEqual(m[1]["echo_mean"], float(pic.data[0][lab == 2].mean()), delta=1.0)
        cli = find_cli()
        if not cli:
            self.skipTest("sarco CLI not built (set SARCO_CLI)")
        tmp = tempfile.mkdtemp(prefix="sarco_us_")
        lp = os.path.join(tmp, "lab.png")
        us_phantom.write_png(lp, lab)
        out = json.loads(subprocess.run([cli, "measure", "--labels", lp, "--image", jpg, "--pixel-spacing-mm", "0.1",
                                         "0.1"], check=True, capture_output=True, text=True).stdout)
        for e, want in zip(out["labels"], m):
            self.assertAlmostEqual(e["ultrasound"]["echo_mean"], want["echo_mean"], delta=1e-7)
            self.assertAlmostEqual(e["ultrasound"]["csa_mm2"], want["csa_mm2"], delta=1e-9)
        # the JPEG carries no usable density: without --pixel-spacing-mm it is refused
        r = subprocess.run([cli, "measure", "--labels", lp, "--image", jpg], capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--pixel-spacing-mm", r.stderr)


if __name__ == "__main__":
    unittest.main()
