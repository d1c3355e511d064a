"""The thigh phantom generator (python/sarco/phantom.py): determinism, exact volumes (against an
analytic femur volume and a finer supersampling), anatomy and HU, the blur and the NIfTI writer.
numpy only (the NIfTI round trip needs the shared library, SARCO_LIBRARY)."""
import os
import tempfile
import unittest

import numpy as np

import sarco
from sarco import phantom

GRID = dict(shape=(128, 128, 12), spacing=(0.9, 0.9, 3.0))


def small(seed, **kw):
    return phantom.generate(seed, **{**GRID, **kw})


class Phantom(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.p = small(3)

    def test_deterministic(self):
        q = small(3)
        np.testing.assert_array_equal(q.image, self.p.image)
        np.testing.assert_array_equal(q.labels, self.p.labels)
        self.assertEqual(q.volumes_ml, self.p.volumes_ml)
        r = small(4)
        self.assertFalse(np.array_equal(r.labels, self.p.labels))

    def test_grid_and_types(self):
        p = self.p
        self.assertEqual(p.image.shape, GRID["shape"])
        self.assertEqual(p.labels.shape, GRID["shape"])
        self.assertEqual(p.image.dtype, np.float32)
        self.assertEqual(p.labels.dtype, np.uint8)
        np.testing.assert_array_equal(p.image, np.round(p.image))  # integer HU, as scanners store them
        np.testing.assert_allclose(np.diag(p.affine)[:3], GRID["spacing"])
        self.assertEqual(set(np.unique(p.labels)), set(range(len(phantom.CLASSES))))
        # drawn grids are anisotropic with a field of view larger than the thigh
        q = phantom.generate(11)
        self.assertEqual(q.spacing[0], q.spacing[1])
        self.assertGreater(q.spacing[2], 1.9 * q.spacing[0])
        lab = q.labels > 0
        self.assertFalse(lab[0].any() or lab[-1].any() or lab[:, 0].any() or lab[:, -1].any())

    def test_femur_volume_is_analytic(self):
        # The femur is an ellipse of area pi R^2 scaled by the taper along z: an independent formula
        # for the volume the supersampled integration must find.
        h = dict(GRID)
        P, spacing, shape = phantom._params(np.random.default_rng(3), h["spacing"], h["shape"])
        sz = spacing[2]
        z = np.arange(shape[2]) * sz - P["zmid"]
        scale = 1.0 + P["taper"] * z / 100.0
        want = float(np.sum(np.pi * (P["femur_r"] * scale) ** 2) * sz / 1000.0)
        self.assertAlmostEqual(self.p.volumes_ml["femur"] / want, 1.0, delta=5e-4)

    def test_volumes_converge_with_supersampling(self):
        fine = small(3, supersample=(6, 6, 2))
        for name in phantom.CLASSES[1:]:
            with self.subTest(name=name):
                self.assertAlmostEqual(self.p.volumes_ml[name] / fine.volumes_ml[name], 1.0, delta=1e-3)
                # the label map (largest fraction per voxel) is unbiased to within a few voxels' worth
                self.assertAlmostEqual(self.p.label_volumes_ml[name] / self.p.volumes_ml[name], 1.0, delta=0.015)

    def test_volume_errors_percent(self):
        # the phantom's own label map: its voxel-count volumes; an empty map: -100 % everywhere
        own = self.p.volume_errors_percent(self.p.labels, which=range(1, 8))
        for l, e in own.items():
            name = phantom.CLASSES[l]
            self.assertAlmostEqual(e, 100.0 * (self.p.label_volumes_ml[name] / self.p.volumes_ml[name] - 1.0), places=9)
        self.assertEqual(list(self.p.volume_errors_percent(self.p.labels)), phantom.MUSCLES)
        for e in self.p.volume_errors_percent(np.zeros_like(self.p.labels)).values():
            self.assertAlmostEqual(e, -100.0, places=12)

    def test_anatomy(self):
        lab = self.p.labels
        c = {l: np.argwhere(lab == l).mean(0) for l in range(1, 8)}
        # a right thigh in RAS: lateral is -x, anterior +y (rotation is at most 12 degrees)
        self.assertLess(c[2][0], c[4][0])   # vastus lateralis lateral to vastus medialis
        self.assertGreater(c[1][1], c[6][1])  # rectus femoris anterior to the hamstrings
        self.assertGreater(c[1][1], c[3][1])  # ... and superficial to vastus intermedius
        for l in phantom.MUSCLES:  # every muscle in every slice, a sizeable share of the muscle
            self.assertTrue(all((lab[:, :, k] == l).any() for k in range(lab.shape[2])), l)
            self.assertGreater(self.p.volumes_ml[phantom.CLASSES[l]], 0.04 * sum(
                self.p.volumes_ml[phantom.CLASSES[m]] for m in phantom.MUSCLES))

    def test_hu(self):
        p = self.p
        img, lab = p.image, p.labels
        interior = lab.copy()
        for ax in (0, 1):  # drop voxels next to another label (partial volume, blur)
            interior[(np.roll(lab, 1, ax) != lab) | (np.roll(lab, -1, ax) != lab)] = 255
        for i, l in enumerate(phantom.MUSCLES):
            m = img[interior == l]
            self.assertAlmostEqual(float(m.mean()), p.params["muscle_hu"][i], delta=4.0)
            self.assertTrue(25 <= p.params["muscle_hu"][i] <= 58)
        self.assertGreater(float(img[interior == 7].max()), 900.0)  # femur cortex
        far = img > -500  # the thigh, grown by 8 voxels in-plane: beyond it the blur has no reach
        for _ in range(8):
            far = far | np.roll(far, 1, 0) | np.roll(far, -1, 0) | np.roll(far, 1, 1) | np.roll(far, -1, 1)
        air = img[~far]
        self.assertAlmostEqual(float(air.mean()), -1000.0, delta=1.0)
        noise = float(air.std())  # in air the image is the noise alone
        self.assertAlmostEqual(noise, p.params["noise_hu"], delta=0.25 * p.params["noise_hu"])
        # subcutaneous fat: background voxels far from air and muscle
        bg = (lab == 0) & (img > -400) & (img < 0)
        self.assertAlmostEqual(float(np.median(img[bg])), p.params["fat_hu"], delta=10.0)

    def test_small_grid_shrinks_or_refuses(self):
        q = phantom.generate(5, (120, 120, 6), (0.8, 0.8, 2.5))  # 96 mm: the anatomy shrinks to fit
        lab = q.labels > 0
        self.assertFalse(lab[0].any() or lab[-1].any() or lab[:, 0].any() or lab[:, -1].any())
        with self.assertRaises(ValueError):
            phantom.generate(5, (40, 40, 4), (0.8, 0.8, 2.5))


class Blur(unittest.TestCase):
    def test_gaussian_blur(self):
        a = np.zeros((41, 5, 3))
        a[20, 2, 1] = 1.0
        b = phantom.gaussian_blur(a, (2.0, 0, 0))
        x = np.arange(41) - 20.0
        k = np.where(np.abs(x) <= 6, np.exp(-x * x / 8.0), 0.0)
        np.testing.assert_allclose(b[:, 2, 1], k / k.sum(), rtol=1e-12, atol=1e-15)
        self.assertEqual(np.count_nonzero(b[:, [0, 1, 3, 4], :]), 0)  # untouched axes stay untouched
        c = phantom.gaussian_blur(np.full((7, 8, 9), 3.5), (1.3, 0.7, 2.2))
        np.testing.assert_allclose(c, 3.5, rtol=1e-12)  # edges replicated: constants stay constant


class Nifti(unittest.TestCase):
    def test_round_trip_through_libsarco(self):
        p = small(6)
        aff = p.affine.copy()
        aff[:3, 3] = (-12.5, 40.0, -3.25)
        with tempfile.TemporaryDirectory() as d:
            for name, data, dt, kw in [("ct.nii.gz", p.image, np.int16, {}), ("ct.nii", p.image, np.float32, {}),
                                       ("lab.nii.gz", p.labels, None, {"intent_label": True})]:
                with self.subTest(name=name):
                    path = os.path.join(d, name)
                    phantom.write_nifti(path, data, aff, dtype=dt, **kw)
                    im = sarco.load_image(path)
                    np.testing.assert_array_equal(im.data, data.astype(np.float32))
                    np.testing.assert_allclose(im.affine, aff, atol=1e-5)
                    np.testing.assert_allclose(im.spacing, p.spacing, atol=1e-6)
            with self.assertRaises(ValueError):  # values that do not fit int16 exactly
                phantom.write_nifti(os.path.join(d, "x.nii"), p.image + 0.5, aff, dtype=np.int16)
            self.assertEqual(sorted(os.listdir(d)), ["ct.nii", "ct.nii.gz", "lab.nii.gz"])  # no temp files left


if __name__ == "__main__":
    unittest.main()
