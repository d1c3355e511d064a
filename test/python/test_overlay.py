"""sarco.overlay and `sarco overlay`: the documented pixel rules on a known input (docs/report.md),
the same picture from C, Python and the CLI, and bad input."""
import json
import os
import subprocess
import tempfile
import unittest

import numpy as np

import sarco
from _pngutil import read_png
from _testutil import find_cli


def _blend(g, c, alpha=0.4):
    a = int(round(alpha * 255))
    return (g * (255 - a) + c * a + 127) // 255


class OverlayTest(unittest.TestCase):
    def setUp(self):
        self.img = np.full((40, 30), 100.0, dtype=np.float32)  # indexed [x, y]
        self.lab = np.zeros((40, 30), dtype=np.uint16)
        self.lab[10:20, 5:15] = 3

    def test_square_fill(self):
        rgb = sarco.overlay(self.img, self.lab, pixel_mm=1.0, legend=False)
        self.assertEqual(rgb.shape, (30, 40, 3))
        self.assertEqual(rgb.dtype, np.uint8)
        c = np.array(sarco.overlay_color(3))
        inside = np.zeros((30, 40), bool)
        inside[5:15, 10:20] = True
        edge = inside.copy()
        edge[6:14, 11:19] = False
        np.testing.assert_array_equal(rgb[~inside], 100)
        np.testing.assert_array_equal(rgb[edge], np.broadcast_to(c, (edge.sum(), 3)))
        blended = np.array([_blend(100, int(v)) for v in c])
        np.testing.assert_array_equal(rgb[inside & ~edge], np.broadcast_to(blended, ((inside & ~edge).sum(), 3)))

    def test_outline_and_legend(self):
        rgb = sarco.overlay(self.img, self.lab, pixel_mm=1.0, outline=True, class_names=["bg", "a", "b", "muscle"])
        self.assertGreater(rgb.shape[0], 30)  # the legend below
        np.testing.assert_array_equal(rgb[10, 15], 100)
        np.testing.assert_array_equal(rgb[5, 15], sarco.overlay_color(3))
        legend = rgb[30:]
        self.assertTrue((legend == np.array(sarco.overlay_color(3))).all(-1).sum() >= 49)  # the 7 x 7 swatch
        self.assertTrue((legend == 255).all(-1).sum() > 30)  # the text

    def test_cli_matches_python(self):
        cli = find_cli()
        if not cli:
            self.skipTest("the sarco CLI is not built")
        with tempfile.TemporaryDirectory() as d:
            # a 3D volume through NIfTI: image and labels, then the CLI's PNG against sarco.overlay
            vol = np.full((24, 20, 12), -1000.0, np.float32)
            vol[4:20, 3:17, :] = 40.0
            lab = np.zeros(vol.shape, np.uint16)
            lab[6:12, 5:10, 2:10] = 1
            lab[12:18, 8:15, 3:9] = 2
            aff = np.diag([0.8, 0.8, 2.5, 1.0])
            ip, lp, op = (os.path.join(d, n) for n in ("ct.nii.gz", "lab.nii.gz", "o.png"))
            sarco.save_labels(lp, sarco.Image(lab, affine=aff))
            _write_nifti_f32(ip, vol, aff)
            r = subprocess.run([cli, "overlay", "--image", ip, "--labels", lp, "--out", op, "--names", "bg,one,two",
                                "--slices", "4"], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            png, info = read_png(op)
            ct = sarco.load_image(ip)
            want = sarco.overlay(ct, lab, class_names=["bg", "one", "two"], slices=4)
            np.testing.assert_array_equal(png, want)
            self.assertIsNotNone(info["phys"])
            # bad input: labels on another grid, a bad window
            bad = os.path.join(d, "bad.nii.gz")
            sarco.save_labels(bad, sarco.Image(lab[:, :, :6], affine=aff))
            r = subprocess.run([cli, "overlay", "--image", ip, "--labels", bad, "--out", op], capture_output=True,
                               text=True)
            self.assertEqual(r.returncode, 2)
            self.assertIn("same grid", r.stderr)
            r = subprocess.run([cli, "overlay", "--image", ip, "--out", op, "--window", "0", "40"],
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 2)
            self.assertIn("--window", r.stderr)

    def test_bad_input(self):
        with self.assertRaises(ValueError):
            sarco.overlay(self.img, self.lab[:, :10])
        with self.assertRaises(sarco.SarcoError) as e:
            sarco.overlay(self.img, self.lab, alpha=2.0)
        self.assertIn("alpha", str(e.exception))

    def test_write_png_roundtrip(self):
        rgb = sarco.overlay(self.img, self.lab)
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "x.png")
            sarco.write_png(p, rgb, spacing_mm=(0.5, 0.5))
            back, info = read_png(p)
            np.testing.assert_array_equal(back, rgb)
            self.assertEqual(info["phys"], (2000, 2000, 1))


class ReportPythonTest(unittest.TestCase):
    """sarco.report_html / write_report: the C report from Python (the browser test renders it)."""

    def test_report_from_python(self):
        img = np.full((40, 30), 100.0, dtype=np.float32)
        lab = np.zeros((40, 30), dtype=np.uint16)
        lab[10:20, 5:15] = 1
        rgb = sarco.overlay(img, lab, class_names=["bg", "m"])
        seg = {"input": {"path": "a/<b>.nii"}, "labels": [{"label": 1, "name": "m&m", "voxels": 3, "area_cm2": 0.5}]}
        page = sarco.report_html(segment_json=seg, pictures=[(rgb, "cap <1>")], date="D")
        self.assertIn("data:image/png;base64,iVBORw0KGgo", page)
        self.assertIn("cap &lt;1&gt;", page)
        self.assertIn('id="input">&lt;b&gt;.nii<', page)
        self.assertIn("m&amp;m", page)
        self.assertNotIn("<script", page)
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "r.html")
            sarco.write_report(p, segment_json=json.dumps(seg), pictures=[(rgb, "cap <1>")], date="D")
            with open(p, encoding="utf-8") as f:
                self.assertEqual(f.read(), page)
            with self.assertRaises(sarco.SarcoError) as e:
                sarco.report_html(segment_json="{oops")
            self.assertIn("segment JSON does not parse", str(e.exception))
            with self.assertRaises(ValueError):
                sarco.report_html(pictures=[np.zeros((4, 4), np.uint8)])


def _write_nifti_f32(path, data, affine):
    """float32 NIfTI through the library (sarco has no image writer binding: build it with numpy)."""
    import gzip
    import struct
    from _testutil import nifti1_header
    nx, ny, nz = data.shape
    h = nifti1_header([3, nx, ny, nz, 1, 1, 1, 1], 16, 32,
                      [1.0, affine[0, 0], affine[1, 1], affine[2, 2], 1, 1, 1, 1],
                      list(affine[:3, :].reshape(-1)))
    with gzip.open(path, "wb") as f:
        f.write(h + np.asfortranarray(data, dtype="<f4").tobytes(order="F"))


if __name__ == "__main__":
    unittest.main()
