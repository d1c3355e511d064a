"""Image files through the public C API (ctypes), checked with an independent NIfTI header parser
written here with struct + numpy: what sarco_image_write / sarco_labels_write put on disk is read back
field by field, and what sarco_image_read returns is compared with the generated corpus. numpy only.

Needs the shared library (SARCO_LIBRARY or lib/libsarco.so; `make test-py` sets it)."""
import ctypes as C
import gzip
import math
import os
import struct
import tempfile
import unittest

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
NIFTI = os.path.join(ROOT, "test", "data", "nifti")
PNG = os.path.join(ROOT, "test", "data", "png")

OK, INVALID_ARGUMENT, IO, BAD_FORMAT, UNSUPPORTED, LIMIT = 0, 1, 3, 4, 5, 8
FLAG_SCALED, FLAG_NO_SPACING = 2, 4


class Geometry(C.Structure):  # sarco_nifti_geometry
    _fields_ = [("version", C.c_int), ("datatype", C.c_int), ("dim", C.c_int64 * 8), ("pixdim", C.c_double * 8),
                ("xyzt_units", C.c_int), ("qform_code", C.c_int), ("sform_code", C.c_int),
                ("quatern", C.c_double * 3), ("qoffset", C.c_double * 3), ("srow", (C.c_double * 4) * 3)]


class Image(C.Structure):  # sarco_image
    _fields_ = [("ndim", C.c_int), ("dims", C.c_int64 * 3), ("spacing", C.c_double * 3),
                ("affine", (C.c_double * 4) * 4), ("data", C.POINTER(C.c_float)), ("nan_count", C.c_int64),
                ("flags", C.c_uint32), ("nifti", Geometry)]


def load_library():
    path = os.environ.get("SARCO_LIBRARY") or os.path.join(ROOT, "lib", "libsarco.so")
    if not os.path.exists(path):
        return None
    lib = C.CDLL(path)
    P = C.c_void_p
    img_pp = C.POINTER(C.POINTER(Image))
    for name, res, args in [
            ("sarco_context_create", C.c_int, [P, C.POINTER(P)]),
            ("sarco_context_free", None, [P]),
            ("sarco_last_error", C.c_char_p, [P]),
            ("sarco_image_read", C.c_int, [P, C.c_char_p, img_pp]),
            ("sarco_image_write", C.c_int, [P, C.POINTER(Image), C.c_char_p]),
            ("sarco_image_free", None, [C.POINTER(Image)]),
            ("sarco_image_create", C.c_int, [P, C.c_int, C.POINTER(C.c_int64), C.POINTER(C.c_double), img_pp]),
            ("sarco_labels_read", C.c_int, [P, C.c_char_p, C.POINTER(C.POINTER(C.c_uint16)), img_pp]),
            ("sarco_labels_write", C.c_int, [P, C.POINTER(Image), C.POINTER(C.c_uint16), C.c_int, C.c_char_p]),
            ("sarco_labels_free", None, [C.POINTER(C.c_uint16)])]:
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    return lib


LIB = load_library()


def parse_nifti(path):
    """An independent reader: header fields and voxels (file order) of a .nii / .nii.gz."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    sz_le = struct.unpack("<i", raw[:4])[0]
    e = "<" if sz_le in (348, 540) else ">"
    sz = struct.unpack(e + "i", raw[:4])[0]
    h = {"endian": e, "sizeof_hdr": sz}
    if sz == 348:
        h["dim"] = list(struct.unpack_from(e + "8h", raw, 40))
        h["intent_code"], h["datatype"], h["bitpix"] = struct.unpack_from(e + "hhh", raw, 68)
        h["pixdim"] = list(struct.unpack_from(e + "8f", raw, 76))
        h["vox_offset"], h["scl_slope"], h["scl_inter"] = struct.unpack_from(e + "fff", raw, 108)
        h["xyzt_units"] = raw[123]
        h["qform_code"], h["sform_code"] = struct.unpack_from(e + "hh", raw, 252)
        q = struct.unpack_from(e + "6f", raw, 256)
        h["srow"] = np.array(struct.unpack_from(e + "12f", raw, 280), dtype=np.float64).reshape(3, 4)
        h["magic"] = raw[344:348]
    else:
        h["magic"] = raw[4:12]
        h["datatype"], h["bitpix"] = struct.unpack_from(e + "hh", raw, 12)
        h["dim"] = list(struct.unpack_from(e + "8q", raw, 16))
        h["pixdim"] = list(struct.unpack_from(e + "8d", raw, 104))
        h["vox_offset"] = struct.unpack_from(e + "q", raw, 168)[0]
        h["scl_slope"], h["scl_inter"] = struct.unpack_from(e + "dd", raw, 176)
        h["qform_code"], h["sform_code"] = struct.unpack_from(e + "ii", raw, 344)
        q = struct.unpack_from(e + "6d", raw, 352)
        h["srow"] = np.array(struct.unpack_from(e + "12d", raw, 400), dtype=np.float64).reshape(3, 4)
        h["xyzt_units"], h["intent_code"] = struct.unpack_from(e + "ii", raw, 500)
    h["quatern"], h["qoffset"] = list(q[:3]), list(q[3:])
    kinds = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1", 512: "u2", 768: "u4", 1024: "i8",
             1280: "u8"}
    n = int(np.prod(h["dim"][1:h["dim"][0] + 1]))
    dt = np.dtype(kinds[h["datatype"]]).newbyteorder(e)
    vo = int(h["vox_offset"])
    h["voxels"] = np.frombuffer(raw, dtype=dt, count=n, offset=vo)
    h["file_bytes"] = len(raw)
    return h


def same_float(a, b):
    """Header values as doubles: NIfTI-1 stores float32."""
    return a == b or (math.isnan(a) and math.isnan(b))


@unittest.skipIf(LIB is None, "libsarco not built (set SARCO_LIBRARY)")
class ImageFiles(unittest.TestCase):
    def setUp(self):
        self.ctx = C.c_void_p()
        self.assertEqual(LIB.sarco_context_create(None, C.byref(self.ctx)), OK)
        self.tmp = tempfile.TemporaryDirectory()

    def tearDown(self):
        LIB.sarco_context_free(self.ctx)
        self.tmp.cleanup()

    def error(self):
        return LIB.sarco_last_error(self.ctx).decode()

    def read(self, path):
        p = C.POINTER(Image)()
        s = LIB.sarco_image_read(self.ctx, path.encode(), C.byref(p))
        self.assertEqual(s, OK, self.error())
        self.addCleanup(LIB.sarco_image_free, p)
        return p.contents

    def read_labels(self, path):
        lab, geo = C.POINTER(C.c_uint16)(), C.POINTER(Image)()
        s = LIB.sarco_labels_read(self.ctx, path.encode(), C.byref(lab), C.byref(geo))
        self.assertEqual(s, OK, self.error())
        self.addCleanup(LIB.sarco_labels_free, lab)
        self.addCleanup(LIB.sarco_image_free, geo)
        g = geo.contents
        n = g.dims[0] * g.dims[1] * g.dims[2]
        return np.ctypeslib.as_array(lab, shape=(n,)).copy(), geo

    @staticmethod
    def voxels(img):
        n = img.dims[0] * img.dims[1] * img.dims[2]
        return np.ctypeslib.as_array(img.data, shape=(n,)).copy()

    def test_read_matches_corpus(self):
        """Voxels of good files equal the generator's exact values (NaN where NaN)."""
        for name in ("good_n1_be_int16.nii", "good_n2_be_float32.nii", "good_scl.nii", "good_nan_voxels.nii",
                     "good_n1_be_uint64.nii", "good_units_micron.nii"):
            img = self.read(os.path.join(NIFTI, name))
            want = np.fromfile(os.path.join(NIFTI, name + ".f32"), "<f4")
            got = self.voxels(img)
            np.testing.assert_array_equal(got, want, err_msg=name)
            self.assertEqual(img.nan_count, int(np.isnan(want).sum()))
            aff = np.array([[img.affine[r][c] for c in range(4)] for r in range(4)])
            np.testing.assert_allclose(np.sqrt((aff[:3, :3] ** 2).sum(0)), list(img.spacing), rtol=1e-12)
        img = self.read(os.path.join(PNG, "good_ct2_16bit.png"))
        np.testing.assert_array_equal(self.voxels(img), np.fromfile(os.path.join(PNG, "good_ct2_16bit.png.f32"), "<f4"))

    def test_written_image_header(self):
        """sarco_image_write keeps the source header's geometry field for field."""
        for name in ("good_n1_be_int16.nii", "good_n2_le_float64.nii", "good_qform_only.nii",
                     "good_units_metre.nii", "good_qs_disagree.nii", "good_2d.nii"):
            src = parse_nifti(os.path.join(NIFTI, name))
            img = self.read(os.path.join(NIFTI, name))
            for gz in (False, True):
                out = os.path.join(self.tmp.name, "out.nii" + (".gz" if gz else ""))
                self.assertEqual(LIB.sarco_image_write(self.ctx, C.byref(img), out.encode()), OK, self.error())
                h = parse_nifti(out)
                with open(out, "rb") as f:
                    self.assertEqual(f.read(2) == b"\x1f\x8b", gz)
                self.assertEqual(h["endian"], "<")
                self.assertEqual(h["sizeof_hdr"], src["sizeof_hdr"], name)
                self.assertEqual(h["vox_offset"], src["sizeof_hdr"] + 4)
                self.assertEqual((h["datatype"], h["bitpix"]), (16, 32))
                self.assertEqual((h["scl_slope"], h["scl_inter"]), (1.0, 0.0))
                self.assertEqual(h["dim"], src["dim"][:src["dim"][0] + 1] + [1] * (7 - src["dim"][0]), name)
                for k in ("qform_code", "sform_code", "xyzt_units"):
                    self.assertEqual(h[k], src[k], (name, k))
                for k in ("pixdim", "quatern", "qoffset"):
                    self.assertTrue(all(same_float(a, b) for a, b in zip(h[k], src[k])), (name, k, h[k], src[k]))
                np.testing.assert_array_equal(h["srow"], src["srow"], err_msg=name)
                want = np.fromfile(os.path.join(NIFTI, name + ".f32"), "<f4")
                np.testing.assert_array_equal(h["voxels"].astype(np.float32), want, err_msg=name)
                self.assertEqual(h["file_bytes"], h["vox_offset"] + 4 * want.size)

    def test_written_labels_header(self):
        lab, geo = self.read_labels(os.path.join(NIFTI, "lab_n2_be_uint16.nii.gz"))
        src = parse_nifti(os.path.join(NIFTI, "lab_n2_be_uint16.nii.gz"))
        for max_label, dt, bitpix in ((65535, 512, 16),):
            out = os.path.join(self.tmp.name, "lab.nii")
            self.assertEqual(LIB.sarco_labels_write(self.ctx, geo, lab.ctypes.data_as(C.POINTER(C.c_uint16)),
                                                    max_label, out.encode()), OK, self.error())
            h = parse_nifti(out)
            self.assertEqual((h["datatype"], h["bitpix"], h["intent_code"]), (dt, bitpix, 1002))
            self.assertEqual(h["sizeof_hdr"], 540)
            np.testing.assert_array_equal(h["voxels"], lab)
            np.testing.assert_array_equal(h["srow"], src["srow"])
            self.assertEqual(h["pixdim"], src["pixdim"])
            self.assertEqual(h["quatern"], src["quatern"])
        small = (lab % 200).astype(np.uint16)
        out = os.path.join(self.tmp.name, "lab8.nii.gz")
        self.assertEqual(LIB.sarco_labels_write(self.ctx, geo, small.ctypes.data_as(C.POINTER(C.c_uint16)), 199,
                                                out.encode()), OK, self.error())
        h = parse_nifti(out)
        self.assertEqual((h["datatype"], h["bitpix"]), (2, 8))
        np.testing.assert_array_equal(h["voxels"], small)
        back, _ = self.read_labels(out)
        np.testing.assert_array_equal(back, small)

    def test_created_image_is_written_from_its_affine(self):
        dims = (C.c_int64 * 3)(9, 8, 7)
        sp = (C.c_double * 3)(0.5, 0.6, 1.5)
        p = C.POINTER(Image)()
        self.assertEqual(LIB.sarco_image_create(self.ctx, 3, dims, sp, C.byref(p)), OK)
        self.addCleanup(LIB.sarco_image_free, p)
        img = p.contents
        n = 9 * 8 * 7
        vals = np.ctypeslib.as_array(img.data, shape=(n,))
        vals[:] = np.linspace(-1000, 1000, n, dtype=np.float32)
        img.affine[0][3], img.affine[1][3], img.affine[2][3] = -10.0, 20.0, 5.5
        out = os.path.join(self.tmp.name, "made.nii")
        self.assertEqual(LIB.sarco_image_write(self.ctx, p, out.encode()), OK, self.error())
        h = parse_nifti(out)
        self.assertEqual(h["dim"][:4], [3, 9, 8, 7])
        np.testing.assert_allclose(h["srow"], [[0.5, 0, 0, -10], [0, 0.6, 0, 20], [0, 0, 1.5, 5.5]], rtol=1e-7)
        np.testing.assert_allclose(h["pixdim"][1:4], [0.5, 0.6, 1.5], rtol=1e-7)
        self.assertEqual(h["quatern"], [0.0, 0.0, 0.0])
        self.assertEqual(h["xyzt_units"], 2)
        np.testing.assert_array_equal(h["voxels"], vals)

    def test_failed_write_leaves_nothing(self):
        img = self.read(os.path.join(NIFTI, "good_2d.nii"))
        missing = os.path.join(self.tmp.name, "missing", "x.nii")
        self.assertEqual(LIB.sarco_image_write(self.ctx, C.byref(img), missing.encode()), IO)
        self.assertIn("temporary file", self.error())
        target = os.path.join(self.tmp.name, "isdir.nii.gz")
        os.mkdir(target)
        self.assertEqual(LIB.sarco_image_write(self.ctx, C.byref(img), target.encode()), IO)
        self.assertEqual(sorted(os.listdir(self.tmp.name)), ["isdir.nii.gz"])
        self.assertEqual(LIB.sarco_image_write(self.ctx, C.byref(img), os.path.join(self.tmp.name, "x.txt").encode()),
                         INVALID_ARGUMENT)

    def test_statuses(self):
        p = C.POINTER(Image)()
        for d, name, status, text in ((NIFTI, "bad_dim0_8_be.nii", BAD_FORMAT, "dim[0] = 8"),
                                      (NIFTI, "bad_gz_bomb.nii.gz", LIMIT, "inflates past"),
                                      (NIFTI, "bad_dim4_3.nii", UNSUPPORTED, "dim[4] = 3"),
                                      (PNG, "bad_pixels.png", LIMIT, "past the cap"),
                                      (PNG, "bad_ihdr_crc.png", BAD_FORMAT, "CRC mismatch")):
            self.assertEqual(LIB.sarco_image_read(self.ctx, os.path.join(d, name).encode(), C.byref(p)), status, name)
            self.assertFalse(p)
            self.assertIn(text, self.error())
        img = self.read(os.path.join(PNG, "good_phys_none.png"))
        self.assertEqual(img.flags, FLAG_NO_SPACING)
        self.assertEqual(list(img.spacing), [0.0, 0.0, 0.0])


if __name__ == "__main__":
    unittest.main()
