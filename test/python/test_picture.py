"""sarco.load_picture against the generated PNG and JPEG corpora (pictures.tsv: the samples as stored,
PIL's decode for JPEG), and its luma against sarco_image_read. numpy only; needs the shared library."""
import os
import unittest

import numpy as np

import sarco

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def table(d):
    rows = []
    with open(os.path.join(d, "pictures.tsv")) as f:
        for line in f:
            if not line.startswith("#"):
                rows.append(line.rstrip("\n").split("\t"))
    return rows


class TestPicture(unittest.TestCase):
    def check_dir(self, sub):
        d = os.path.join(ROOT, "test", "data", sub)
        rows = table(d)
        self.assertGreater(len(rows), 14)
        for name, ch, depth, flags, spacing, dfile in rows:
            p = sarco.load_picture(os.path.join(d, name))
            want = np.fromfile(os.path.join(d, dfile), dtype="<f4")
            self.assertEqual(p.data.shape[0], int(ch), name)
            self.assertEqual(p.data.dtype, np.float32)
            np.testing.assert_array_equal(p.data.reshape(-1), want, err_msg=name)
            self.assertEqual(p.bit_depth, int(depth), name)
            sp = [float(v) for v in spacing.split(",")]
            if int(flags) & 4:
                self.assertIsNone(p.spacing, name)
                self.assertIn("no_spacing", p.flags)
            else:
                np.testing.assert_allclose(p.spacing, sp, rtol=1e-12, err_msg=name)
            # its luma is what load_image reads (x fastest there: transpose)
            img = sarco.load_image(os.path.join(d, name))
            np.testing.assert_array_equal(p.luma(), img.data.T, err_msg=name)

    def test_png(self):
        self.check_dir("png")

    def test_jpeg(self):
        self.check_dir("jpeg")

    def test_rgba_palette(self):
        p = sarco.load_picture(os.path.join(ROOT, "test", "data", "png", "good_palette_trns.png"))
        self.assertEqual(p.channels, 4)
        self.assertEqual(p.format, "png")
        self.assertIn("from_palette", p.flags)
        self.assertEqual(p.spacing, (0.1, 0.1))

    def test_bad(self):
        with self.assertRaises(sarco.SarcoError) as e:
            sarco.load_picture(os.path.join(ROOT, "test", "data", "jpeg", "bad_cmyk.jpg"))
        self.assertIn("CMYK", str(e.exception))
        self.assertEqual(e.exception.status, 5)
        with self.assertRaises(sarco.SarcoError) as e:
            sarco.load_picture(os.path.join(ROOT, "test", "data", "jpeg", "bad_truncated_scan.jpg"))
        self.assertIn("truncated", str(e.exception))


if __name__ == "__main__":
    unittest.main()
