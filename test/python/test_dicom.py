"""DICOM input (docs/io.md "DICOM") against the references test/gen_dicom_reference.py computed once:
SimpleITK's ImageSeriesReader (affine turned to RAS) for series, pydicom's decode for single files;
bad inputs from manifest.tsv. numpy only; needs the shared library (and the CLI for the CLI tests)."""
import json
import os
import subprocess
import tempfile
import unittest

import numpy as np

import sarco
from sarco._lib import SarcoError
from sarco.picture import load_picture
from _testutil import find_cli

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
D = os.path.join(ROOT, "test", "data", "dicom")
STATUS = {1: "invalid argument", 3: "I/O", 4: "bad format", 5: "unsupported", 8: "limit"}
AFFINE_TOL = 1e-6  # mm; the DS strings carry 6-8 decimals, SimpleITK and we compute in double
LOSSY_TOL = 0      # grey levels: JPEG baseline, GDCM's libjpeg vs Pillow's libjpeg-turbo (measured: identical)


def rows():
    out = []
    with open(os.path.join(D, "expected.tsv")) as f:
        for line in f:
            if not line.startswith("#"):
                p = line.rstrip("\n").split("\t")
                out.append((p[0], p[1], [int(v) for v in p[2:6]], np.array([float(v) for v in p[6:18]])))
    return out


class TestDicom(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.ref = np.load(os.path.join(D, "expected.npz"))

    def want(self, key):
        return self.ref[key.replace("/", "__")]

    def test_series_vs_simpleitk(self):
        n = 0
        for key, uid, shape, aff in rows():
            if not key.startswith("series/"):
                continue
            im = sarco.load_image(os.path.join(D, key), series=None if uid == "-" else uid)
            ref = self.want(key)
            self.assertEqual(im.data.shape, ref.shape, key)
            np.testing.assert_array_equal(im.data, ref, err_msg=key)  # integers x slope + intercept: exact
            np.testing.assert_allclose(im.affine[:3].ravel(), aff, atol=AFFINE_TOL, rtol=0, err_msg=key)
            self.assertEqual(im.dicom["files"], shape[2], key)
            self.assertAlmostEqual(im.dicom["slice_spacing"], float(np.linalg.norm(im.affine[:3, 2])), 6)
            self.assertEqual(im.dicom["spacing_source"], "PixelSpacing")
            n += 1
        self.assertEqual(n, 8)

    def test_series_with_a_file_list_order_is_not_used(self):
        # the axial series' files are named in shuffled order; the first voxel plane is the lowest z
        im = sarco.load_image(os.path.join(D, "series", "axial"))
        self.assertEqual(im.affine[2, 3], 30.0)
        self.assertGreater(im.affine[2, 2], 0)
        neg = sarco.load_image(os.path.join(D, "series", "negative"))
        self.assertLess(neg.affine[2, 2], 0)  # the normal points to -z (LPS): slices ascend along it

    def test_single_files_vs_pydicom(self):
        n = 0
        for key, src, shape, sp in rows():
            if key.startswith("series/"):
                continue
            path = os.path.join(D, key)
            ref = self.want(key)
            colour = ref.dtype != np.float32  # grey references are float32 (rescaled), colour uint8/uint16 RGB
            tol = LOSSY_TOL if "jpeg_dcmtk" in key else 0
            if colour and (ref.ndim == 3):
                pic = load_picture(path)
                got = np.moveaxis(pic.data, 0, -1)
                self.assertEqual(got.shape, ref.shape, key)
                self.assertLessEqual(np.abs(got - ref).max(), tol, key)
                self.assertEqual(pic.format, "dicom")
            im = sarco.load_image(path)
            if colour:
                r = ref.astype(np.float64)
                luma = (0.299 * r[..., 0] + 0.587 * r[..., 1] + 0.114 * r[..., 2]) / (257.0 if ref.dtype == np.uint16 else 1)
                ours = im.data.T if im.data.ndim == 2 else np.transpose(im.data, (2, 1, 0))
                self.assertLessEqual(np.abs(ours - luma).max(), tol + 1e-3, key)
            else:
                ours = im.data.T if im.data.ndim == 2 else np.transpose(im.data, (2, 1, 0))
                self.assertEqual(ours.shape, ref.shape, key)
                self.assertLessEqual(np.abs(ours - ref).max(), tol, key)
            if key.startswith("us/"):
                row, col = sp[0], sp[1]
                if row == 0:
                    self.assertIn("no_spacing", [] if not (im.flags & 0x4) else ["no_spacing"], key)
                    self.assertIsNone(im.dicom["spacing_source"], key)
                else:
                    self.assertAlmostEqual(im.spacing[0], col, 12, key)
                    self.assertAlmostEqual(im.spacing[1], row, 12, key)
                    want = "PixelSpacing" if "palette" in key else "ultrasound regions"
                    self.assertEqual(im.dicom["spacing_source"], want, key)
            n += 1
        self.assertGreater(n, 20)

    def test_cine_frames_flag(self):
        im = sarco.load_image(os.path.join(D, "us", "mono1_cine.dcm"))
        self.assertEqual(im.data.shape, (48, 40, 3))
        self.assertTrue(im.flags & 0x10 and im.flags & 0x20)  # DICOM_FRAMES, MONOCHROME1
        with self.assertRaisesRegex(SarcoError, "3 frames: a picture is one frame"):
            load_picture(os.path.join(D, "us", "mono1_cine.dcm"))

    def test_bad_inputs(self):
        with open(os.path.join(D, "manifest.tsv")) as f:
            items = [ln.rstrip("\n").split("\t") for ln in f if not ln.startswith("#")]
        self.assertGreater(len(items), 12)
        for path, status, needle in items:
            with self.assertRaises(SarcoError, msg=path) as cm:
                sarco.load_image(os.path.join(D, path))
            text = str(cm.exception)
            self.assertIn(STATUS[int(status)], text, path)
            self.assertIn(needle, text, path)
            if not os.path.isdir(os.path.join(D, path)):
                self.assertIn(os.path.basename(path), text, path)

    def test_two_series_listed_and_unknown_uid(self):
        with self.assertRaises(SarcoError) as cm:
            sarco.load_image(os.path.join(D, "series", "two"))
        self.assertIn("synthetic axial", str(cm.exception))
        self.assertIn("synthetic oblique", str(cm.exception))
        with self.assertRaisesRegex(SarcoError, "no series 1.2.3 here"):
            sarco.load_image(os.path.join(D, "series", "two"), series="1.2.3")

    def test_folder_loop(self):
        with tempfile.TemporaryDirectory() as t:
            os.symlink(os.path.join(D, "series", "axial"), os.path.join(t, "a"))
            os.symlink(t, os.path.join(t, "back"))
            with self.assertRaisesRegex(SarcoError, "a folder loop"):
                sarco.load_image(t)

    def test_no_patient_data_in_info(self):
        im = sarco.load_image(os.path.join(D, "series", "axial"))
        text = json.dumps(im.dicom)
        for secret in ("Secret", "SECRET-ID", "19000101"):
            self.assertNotIn(secret, text)


@unittest.skipUnless(find_cli(), "the sarco CLI is not built")
class TestDicomCli(unittest.TestCase):
    def test_segment_dicom_equals_nifti(self):
        """sarco segment on a DICOM series gives the labels it gives on the same data as NIfTI."""
        cli = find_cli()
        model = os.path.join(ROOT, "weights", "demo_thigh_unetr.safetensors")
        if not os.path.exists(model):
            self.skipTest("no demo model")
        with tempfile.TemporaryDirectory() as t:
            ct = sarco.load_image(os.path.join(D, "series", "oblique"))
            nii = os.path.join(t, "ct.nii.gz")
            import ctypes
            from sarco.pipeline import _so
            so = _so()
            so.sarco_image_write.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p]
            st = ct._struct()
            self.assertEqual(so.sarco_image_write(None, ctypes.byref(st), nii.encode()), 0)
            outs = {}
            for name, inp, extra in (("nifti", nii, []), ("dicom", os.path.join(D, "series", "oblique"), []),
                                     ("two", os.path.join(D, "series", "two"), ["--series", rows()[7][1]])):
                lab = os.path.join(t, f"{name}.nii.gz")
                rep = os.path.join(t, f"{name}.json")
                r = subprocess.run([cli, "segment", "--model", model, "--input", inp, "--output", lab, "--report", rep]
                                   + extra, capture_output=True, text=True)
                self.assertEqual(r.returncode, 0, r.stderr)
                with open(rep) as fh:
                    text = fh.read()
                outs[name] = (sarco.load_image(lab), json.loads(text), text)
            self.assertGreater(int((outs["nifti"][0].data > 0).sum()), 0)  # not a trivially empty map
            for name in ("dicom", "two"):
                np.testing.assert_array_equal(outs[name][0].data, outs["nifti"][0].data)
                np.testing.assert_allclose(outs[name][0].affine, outs["nifti"][0].affine, atol=1e-5)
                d = outs[name][1]["input"]["dicom"]
                self.assertEqual(d["slices"], 5)
                self.assertEqual(d["series_description"], "synthetic oblique")
                for secret in ("Secret", "SECRET-ID", "19000101"):
                    self.assertNotIn(secret, outs[name][2])
            r = subprocess.run([cli, "segment", "--model", model, "--input", os.path.join(D, "series", "two"),
                                "--output", os.path.join(t, "x.nii.gz")], capture_output=True, text=True)
            self.assertEqual(r.returncode, 2)
            self.assertIn("--series UID", r.stderr)
            self.assertFalse(os.path.exists(os.path.join(t, "x.nii.gz")))


if __name__ == "__main__":
    unittest.main()
