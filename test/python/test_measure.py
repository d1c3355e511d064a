"""sarco.evaluate / sarco.measure / sarco.metrics.edt / sarco.stats against scipy and MONAI results
committed by test/gen_measure_reference.py, against numpy computations, and on analytic cases.
numpy only. Needs the shared library (SARCO_LIBRARY or lib/libsarco.so; `make test-py` sets it)."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "python"))

import sarco  # noqa: E402
from sarco import metrics, stats  # noqa: E402
from _testutil import find_cli, nifti1_header  # noqa: E402

DATA = os.path.join(ROOT, "test", "data", "measure")
KEYS = ["label", "dice", "jaccard", "hd_mm", "hd95_mm", "assd_mm", "ravd_percent", "volume_pred_ml",
        "volume_ref_ml", "flags"]


def load_reference():
    with open(os.path.join(DATA, "reference.json")) as f:
        ref = json.load(f)
    for c in ref["cases"]:
        c["pred_arr"] = np.load(os.path.join(DATA, c["pred"]))
        c["ref_arr"] = np.load(os.path.join(DATA, c["ref"]))
        c["edt_arr"] = np.load(os.path.join(DATA, c["edt"]))
    return ref


def rel(a, b):
    return abs(a - b) / max(1.0, abs(b))


class TestReference(unittest.TestCase):
    """Agreement with scipy (float64, REFERENCE.md's definitions) and MONAI 1.6 (float32)."""

    @classmethod
    def setUpClass(cls):
        cls.ref = load_reference()

    def test_metrics_vs_scipy_and_monai(self):
        worst_exact = worst_monai = 0.0
        for c in self.ref["cases"]:
            r = metrics.evaluate(c["pred_arr"], c["ref_arr"], spacing=c["spacing"])
            self.assertEqual(sorted(r), [e["label"] for e in c["labels"]])
            for e in c["labels"]:
                got = r[e["label"]]
                for k in KEYS:
                    self.assertIn(k, got)
                self.assertEqual(got["flags"], [])
                for k in ("voxels_pred", "voxels_ref", "voxels_both", "surface_pred", "surface_ref"):
                    self.assertEqual(got[k], e["exact"][k], (c["name"], e["label"], k))
                for k in ("dice", "jaccard", "hd_mm", "hd95_mm", "assd_mm"):
                    d = rel(got[k], e["exact"][k])
                    worst_exact = max(worst_exact, d)
                    self.assertLess(d, 1e-6, (c["name"], e["label"], k, got[k], e["exact"][k]))
                    if k in e["monai"]:
                        d = rel(got[k], e["monai"][k])
                        worst_monai = max(worst_monai, d)
                        self.assertLess(d, 1e-5, (c["name"], e["label"], k, got[k], e["monai"][k]))
                # RAVD and volumes from the counts
                sp = np.prod(c["spacing"])
                self.assertAlmostEqual(got["ravd_percent"],
                                       (e["exact"]["voxels_pred"] - e["exact"]["voxels_ref"]) / e["exact"]["voxels_ref"]
                                       * 100.0, places=10)
                if len(c["shape"]) == 3:
                    self.assertAlmostEqual(got["volume_pred_ml"], e["exact"]["voxels_pred"] * sp / 1000.0, places=12)
                else:
                    self.assertIsNone(got["volume_pred_ml"])
                    self.assertAlmostEqual(got["area_ref_cm2"], e["exact"]["voxels_ref"] * sp / 100.0, places=12)
        print(f"\nmetrics vs scipy: max rel diff {worst_exact:.3g}; vs MONAI: {worst_monai:.3g}", file=sys.stderr)

    def test_edt_vs_scipy(self):
        for c in self.ref["cases"]:
            d = metrics.edt(c["pred_arr"] == 1, c["spacing"])
            want = c["edt_arr"]
            err = np.max(np.abs(d.astype(np.float64) - want) / np.maximum(1.0, want))
            self.assertLess(err, 1e-6, c["name"])

    def test_axis_order(self):
        """Transposing the arrays together with the spacing changes nothing; any memory order works."""
        c = next(c for c in self.ref["cases"] if len(c["shape"]) == 3)
        base = metrics.evaluate(c["pred_arr"], c["ref_arr"], c["spacing"])
        perm = (2, 0, 1)
        sp = [c["spacing"][a] for a in perm]
        t = metrics.evaluate(np.transpose(c["pred_arr"], perm), np.asfortranarray(np.transpose(c["ref_arr"], perm)), sp)
        for l in base:
            for k in ("dice", "hd_mm", "hd95_mm", "assd_mm", "surface_pred"):
                self.assertAlmostEqual(base[l][k], t[l][k], places=5)
        # a wrong spacing order does change the distances: the order matters
        w = metrics.evaluate(np.transpose(c["pred_arr"], perm), np.transpose(c["ref_arr"], perm), c["spacing"])
        self.assertTrue(any(abs(w[l]["hd_mm"] - base[l]["hd_mm"]) > 1e-3 for l in base))


class TestAnalytic(unittest.TestCase):
    def test_shift_and_empty(self):
        sp = (2.0, 0.7, 1.3)
        g = np.zeros((12, 14, 16), np.int32)
        g[2:10, 3:11, 4:12] = 3
        for axis in range(3):
            p = np.roll(g, 1, axis=axis)
            r = metrics.evaluate(p, g, sp, labels=[3, 5])
            self.assertAlmostEqual(r[3]["hd_mm"], sp[axis], places=6)
            self.assertAlmostEqual(r[3]["dice"], 7 / 8, places=12)
            self.assertEqual(r[5]["flags"], ["pred_empty", "ref_empty", "ravd_undefined"])
            self.assertEqual((r[5]["dice"], r[5]["hd95_mm"]), (1.0, 0.0))
        diag = float(np.sqrt(sum((n * s) ** 2 for n, s in zip(g.shape, sp))))
        r = metrics.evaluate(np.zeros_like(g), g, sp)
        self.assertEqual(r[3]["flags"], ["pred_empty"])
        self.assertAlmostEqual(r[3]["assd_mm"], diag, places=9)
        self.assertAlmostEqual(r[3]["ravd_percent"], -100.0, places=12)
        r = metrics.evaluate(g, np.zeros_like(g), sp)
        self.assertEqual(r[3]["flags"], ["ref_empty", "ravd_undefined"])
        self.assertEqual(r[3]["ravd_percent"], 0.0)
        for e in r.values():
            for k, v in e.items():
                if isinstance(v, float):
                    self.assertTrue(np.isfinite(v), k)

    def test_measure_volumes_and_hu(self):
        rng = np.random.default_rng(5)
        lab = rng.integers(0, 4, size=(9, 21, 17)).astype(np.uint8)
        img = rng.integers(-300, 400, size=lab.shape).astype(np.float32)
        img[0, 0, :5] = np.nan
        sp = (3.0, 0.75, 0.6)
        r = metrics.measure(lab, image=img, spacing=sp)
        self.assertEqual(sorted(r), [1, 2, 3])
        for l in (1, 2, 3):
            m = lab == l
            v = img[m]
            v = v[np.isfinite(v)].astype(np.float64)
            e = r[l]
            self.assertEqual(e["voxels"], int(m.sum()))
            self.assertAlmostEqual(e["volume_ml"], m.sum() * np.prod(sp) / 1000.0, places=12)
            self.assertEqual(e["finite_voxels"], v.size)
            self.assertAlmostEqual(e["hu_mean"], v.mean(), places=9)
            self.assertAlmostEqual(e["hu_sd"], v.std(), places=7)
            self.assertEqual((e["hu_min"], e["hu_max"]), (v.min(), v.max()))
            self.assertAlmostEqual(e["hu_fraction_muscle"], np.mean((v >= -29) & (v <= 150)), places=12)
            self.assertAlmostEqual(e["hu_fraction_imat"], np.mean((v >= -190) & (v <= -30)), places=12)
        r2 = metrics.measure(lab[4], spacing=sp[1:], which=[2, 9])
        self.assertEqual(list(r2), [2, 9])
        self.assertAlmostEqual(r2[2]["area_cm2"], (lab[4] == 2).sum() * sp[1] * sp[2] / 100.0, places=12)
        self.assertEqual(r2[9]["voxels"], 0)
        self.assertNotIn("hu_mean", r2[2])

    def test_package_exports(self):
        self.assertIs(sarco.evaluate, metrics.evaluate)
        self.assertIs(sarco.measure, metrics.measure)
        self.assertIs(sarco.edt, metrics.edt)

    def test_errors(self):
        g = np.zeros((5, 6), np.int16)
        with self.assertRaises(ValueError):
            metrics.evaluate(g - 1, g, (1, 1))  # negative labels
        with self.assertRaises(ValueError):
            metrics.evaluate(g, g[:4], (1, 1))
        with self.assertRaises(ValueError):
            metrics.evaluate(g, g, (1, 1, 1))
        with self.assertRaises(ValueError):
            metrics.measure(g, spacing=None)
        with self.assertRaises(ValueError):
            metrics.evaluate(np.zeros((3,), np.uint8), np.zeros((3,), np.uint8), (1,))
        with self.assertRaises(TypeError):
            metrics.measure(g + 0.5, spacing=(1, 1))
        with self.assertRaises(sarco.SarcoError) as cm:
            metrics.evaluate(g, g, (1.0, 0.0))
        self.assertIn("spacing[1]", str(cm.exception))


class TestStats(unittest.TestCase):
    def test_pearson(self):
        rng = np.random.default_rng(1)
        x = rng.normal(500, 80, size=57)
        y = 0.9 * x + rng.normal(0, 30, size=57)
        self.assertAlmostEqual(stats.pearson(x, y), np.corrcoef(x, y)[0, 1], places=12)
        with self.assertRaises(sarco.SarcoError):
            stats.pearson(x, np.ones_like(x))

    @staticmethod
    def icc_numpy(a):
        """Shrout & Fleiss mean squares, written out independently with numpy."""
        n, k = a.shape
        gm = a.mean()
        msr = k * np.sum((a.mean(axis=1) - gm) ** 2) / (n - 1)
        msc = n * np.sum((a.mean(axis=0) - gm) ** 2) / (k - 1)
        resid = a - a.mean(axis=1, keepdims=True) - a.mean(axis=0, keepdims=True) + gm
        mse = np.sum(resid ** 2) / ((n - 1) * (k - 1))
        msw = np.sum((a - a.mean(axis=1, keepdims=True)) ** 2) / (n * (k - 1))
        return {"1,1": (msr - msw) / (msr + (k - 1) * msw),
                "2,1": (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n),
                "3,1": (msr - mse) / (msr + (k - 1) * mse)}

    def test_icc(self):
        sf = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]], float)
        for form, published in (("1,1", 0.17), ("2,1", 0.29), ("3,1", 0.71)):
            self.assertAlmostEqual(stats.icc(sf, form=form), published, delta=0.005)
        rng = np.random.default_rng(2)
        a = rng.normal(100, 20, size=(40, 1)) + rng.normal(0, 5, size=(40, 3)) + np.array([0.0, 2.0, -1.0])
        want = self.icc_numpy(a)
        for form in ("1,1", "2,1", "3,1"):
            self.assertAlmostEqual(stats.icc(a, form=form), want[form], places=12)
        self.assertAlmostEqual(stats.icc(a[:, 0], a[:, 1], form="ICC(3,1)"), self.icc_numpy(a[:, :2])["3,1"], places=12)
        with self.assertRaises(ValueError):
            stats.icc(a, form="4,2")

    def test_auc_and_binary(self):
        rng = np.random.default_rng(3)
        t = rng.random(300) < 0.35
        s = np.round(rng.random(300) + 0.4 * t, 1)  # many ties
        pos, neg = s[t], s[~t]
        want = (np.sum(pos[:, None] > neg[None, :]) + 0.5 * np.sum(pos[:, None] == neg[None, :])) / (pos.size * neg.size)
        self.assertAlmostEqual(stats.auc(s, t), want, places=12)
        m = stats.binary_metrics(s, t, threshold=0.7)
        pr = s >= 0.7
        tp, fp, tn, fn = (int(np.sum(pr & t)), int(np.sum(pr & ~t)), int(np.sum(~pr & ~t)), int(np.sum(~pr & t)))
        self.assertEqual((m["tp"], m["fp"], m["tn"], m["fn"]), (tp, fp, tn, fn))
        self.assertAlmostEqual(m["sensitivity"], tp / (tp + fn), places=14)
        self.assertAlmostEqual(m["specificity"], tn / (tn + fp), places=14)
        self.assertAlmostEqual(m["accuracy"], (tp + tn) / 300, places=14)
        self.assertAlmostEqual(m["f1"], 2 * tp / (2 * tp + fp + fn), places=14)
        self.assertEqual(stats.f1(s, t, 0.7), m["f1"])
        self.assertEqual(stats.binary_metrics(s, np.zeros(300), 0.5)["flags"], ["no_positives"])
        self.assertEqual(stats.binary_metrics(s, np.zeros(300), 10.0)["flags"], ["no_positives", "f1_undefined"])
        with self.assertRaises(sarco.SarcoError):
            stats.auc(s, np.zeros(300))


def write_nifti(path, arr, spacing):
    """A NIfTI-1 file holding the C-order array arr (axes slowest..fastest) with spacing per axis: the
    file's x is arr's last axis, so the library must reverse the axes back."""
    arr = np.asarray(arr)
    dt = {np.dtype(np.uint8): (2, 8), np.dtype(np.uint16): (512, 16), np.dtype(np.float32): (16, 32)}[arr.dtype]
    nd = arr.ndim
    dims = [nd] + list(arr.shape[::-1]) + [1] * (7 - nd)
    sp = list(spacing)[::-1]
    aff = np.zeros((3, 4))
    for a in range(3):
        aff[a, a] = sp[a] if a < nd else 1.0
    with open(path, "wb") as f:
        f.write(nifti1_header(dims, *dt, [1.0] + sp + [1.0] * (7 - nd), aff.reshape(-1)))
        f.write(np.ascontiguousarray(arr).tobytes())


class TestCLI(unittest.TestCase):
    """sarco evaluate / sarco measure on NIfTI files: the axis order (x fastest in the file), units in
    the keys, the --list summary, exit codes."""

    @classmethod
    def setUpClass(cls):
        cls.cli = find_cli()
        cls.ref = load_reference()
        cls.tmp = tempfile.mkdtemp(prefix="sarco_measure_")
        # float32 pixdim in the file: compare with evaluate() on the spacing as stored
        cls.files = {}
        for c in cls.ref["cases"]:
            c["sp32"] = [float(np.float32(v)) for v in c["spacing"]]
            for k in ("pred", "ref"):
                path = os.path.join(cls.tmp, f"{c['name']}_{k}.nii")
                write_nifti(path, c[f"{k}_arr"], c["spacing"])
                cls.files[c["name"], k] = path

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def run_cli(self, *args, ok=True):
        if not self.cli:
            self.skipTest("sarco CLI not built (set SARCO_CLI)")
        p = subprocess.run([self.cli, *args], capture_output=True, text=True, timeout=120)
        if ok:
            self.assertEqual(p.returncode, 0, p.stderr)
            return json.loads(p.stdout)
        return p

    def test_evaluate_pair(self):
        for c in self.ref["cases"]:
            out = self.run_cli("evaluate", "--pred", self.files[c["name"], "pred"], "--ref", self.files[c["name"], "ref"])
            want = metrics.evaluate(c["pred_arr"], c["ref_arr"], c["sp32"])
            self.assertEqual(out["dims"], list(c["shape"][::-1]))
            self.assertFalse(out["units_assumed_mm"])
            self.assertEqual([e["label"] for e in out["labels"]], sorted(want))
            for e in out["labels"]:
                w = want[e["label"]]
                for k in ("dice", "jaccard", "hd_mm", "hd95_mm", "assd_mm", "ravd_percent", "volume_pred_ml",
                          "volume_ref_ml", "flags", "surface_pred", "surface_ref"):
                    if isinstance(w[k], float):
                        self.assertLess(rel(e[k], w[k]), 1e-6, (c["name"], e["label"], k))
                    else:
                        self.assertEqual(e[k], w[k], (c["name"], e["label"], k))
                if len(c["shape"]) == 2:
                    self.assertLess(rel(e["area_pred_cm2"], w["area_pred_cm2"]), 1e-6)
        out = self.run_cli("evaluate", "--pred", self.files["blobs3d", "pred"], "--ref", self.files["blobs3d", "ref"],
                           "--labels", "3,9")
        self.assertEqual([e["label"] for e in out["labels"]], [3, 9])
        self.assertEqual(out["labels"][1]["flags"], ["pred_empty", "ref_empty", "ravd_undefined"])

    def test_evaluate_list(self):
        c = next(c for c in self.ref["cases"] if c["name"] == "blobs3d")
        p, g = os.path.basename(self.files["blobs3d", "pred"]), os.path.basename(self.files["blobs3d", "ref"])
        csv = os.path.join(self.tmp, "pairs.csv")
        with open(csv, "w") as f:
            f.write(f"id,pred,ref\na,{p},{g}\nb,{g},{p}\nc,{p},{p}\n")
        report = os.path.join(self.tmp, "list.json")
        if not self.cli:
            self.skipTest("sarco CLI not built (set SARCO_CLI)")
        self.run_cli("evaluate", "--list", csv, "--report", report, ok=False)
        with open(report) as f:
            out = json.load(f)
        self.assertEqual([s["id"] for s in out["subjects"]], ["a", "b", "c"])
        arrs = [(c["pred_arr"], c["ref_arr"]), (c["ref_arr"], c["pred_arr"]), (c["pred_arr"], c["pred_arr"])]
        per = [metrics.evaluate(a, b, c["sp32"]) for a, b in arrs]
        for s in out["summary"]:
            l = s["label"]
            dice = np.array([r[l]["dice"] for r in per])
            self.assertLess(rel(s["dice"]["mean"], dice.mean()), 1e-9)
            self.assertLess(rel(s["dice"]["sd"], dice.std(ddof=1)), 1e-9)
            vp = np.array([r[l]["volume_pred_ml"] for r in per])
            vr = np.array([r[l]["volume_ref_ml"] for r in per])
            self.assertLess(rel(s["volume_correlation"], np.corrcoef(vp, vr)[0, 1]), 1e-6)
            self.assertLess(rel(s["volume_icc_2_1"], TestStats.icc_numpy(np.stack([vp, vr], 1))["2,1"]), 1e-6)
            self.assertEqual(s["subjects"], 3)

    def test_measure(self):
        c = next(c for c in self.ref["cases"] if c["name"] == "thin3d")
        img = np.random.default_rng(9).integers(-200, 300, size=c["ref_arr"].shape).astype(np.float32)
        ip = os.path.join(self.tmp, "img.nii")
        write_nifti(ip, img, c["spacing"])
        out = self.run_cli("measure", "--labels", self.files["thin3d", "ref"], "--image", ip, "--height-m", "1.6")
        want = metrics.measure(c["ref_arr"], image=img, spacing=c["sp32"])
        self.assertEqual([e["label"] for e in out["labels"]], sorted(want))
        for e in out["labels"]:
            w = want[e["label"]]
            for k in ("voxels", "volume_ml", "hu_mean", "hu_sd", "hu_min", "hu_max", "hu_fraction_muscle"):
                self.assertLess(rel(e[k], w[k]), 1e-6, (e["label"], k))
            self.assertLess(rel(e["volume_index_ml_per_m2"], w["volume_ml"] / 1.6 ** 2), 1e-6)
        m = c["ref_arr"] > 0
        self.assertEqual(out["total"]["voxels"], int(m.sum()))
        self.assertLess(rel(out["total"]["hu_mean"], img[m].astype(np.float64).mean()), 1e-9)
        # a single slice: areas and the skeletal muscle index in cm^2/m^2
        sl = os.path.join(self.tmp, "slice.nii")
        write_nifti(sl, c["ref_arr"][4], c["spacing"][1:])
        out = self.run_cli("measure", "--labels", sl, "--height-m", "1.6")
        sl_arr = c["ref_arr"][4]
        lab = int(np.argmax(np.bincount(sl_arr[sl_arr > 0])))
        area = (sl_arr == lab).sum() * np.prod(c["sp32"][1:]) / 100.0
        self.assertEqual(out["measured_as"], "2d")
        e = next(e for e in out["labels"] if e["label"] == lab)
        self.assertLess(rel(e["area_cm2"], area), 1e-6)
        self.assertLess(rel(e["area_index_cm2_per_m2"], area / 2.56), 1e-6)

    def test_exit_codes(self):
        p = self.run_cli("evaluate", "--pred", self.files["blobs3d", "pred"], "--ref", self.files["blobs2d", "ref"],
                         ok=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn("same grid", p.stderr)
        p = self.run_cli("evaluate", "--pred", os.path.join(self.tmp, "missing.nii"), "--ref",
                         self.files["blobs2d", "ref"], ok=False)
        self.assertEqual(p.returncode, 2)
        p = self.run_cli("evaluate", "--pred", self.files["blobs2d", "pred"], "--ref", self.files["blobs2d", "ref"],
                         "--labels", "1,x", ok=False)
        self.assertEqual(p.returncode, 2)
        p = self.run_cli("measure", "--labels", self.files["blobs2d", "ref"], "--height-m", "170", ok=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn("metres", p.stderr)


if __name__ == "__main__":
    unittest.main()
