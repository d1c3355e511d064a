"""Classification, fold ensembles, Grad-CAM and the classifier preprocessing through the binding, against
the references test/gen_classify_reference.py took from torchvision and pytorch-grad-cam
(test/data/classify). The weights are rebuilt from test/classifier_seed.py's seed, converted with
sarco.convert and loaded; numpy only.

  - Grad-CAM: max |ours - pytorch-grad-cam| of the normalised maps < 1e-4 (float64 torch models);
  - the fold ensemble: per-fold probabilities vs torchvision's (abs 1e-5 on probabilities, rel L2 1e-5 on
    logits), mean and SD vs numpy's of those;
  - preprocessing: ToTensor + Resize(antialias=True) of real PNG/JPEG files (max abs 1e-5), and PIL's
    uint8 BILINEAR downscale within 1/255 + 1e-6 (its two uint8 roundings);
  - refusals: a 1x1 picture, tabular values for an image-only model, a bad classify config."""
import json
import os
import sys
import tempfile
import unittest

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, os.path.join(ROOT, "test"))

import classifier_seed as cs  # noqa: E402
from sarco import convert  # noqa: E402

DATA = os.path.join(ROOT, "test", "data", "classify")
CAM_MAX = 1e-4


def have_lib():
    return os.environ.get("SARCO_LIBRARY") or os.path.exists(os.path.join(ROOT, "lib", "libsarco.so"))


FINAL = {"torchvision.resnet50": "fc", "torchvision.densenet121": "classifier",
         "torchvision.efficientnet_b0": "classifier.1", "torchvision.vgg19": "classifier.6",
         "torchvision.convnext_tiny": "classifier.2", "torchvision.swin_t": "head"}


def tensor_list(arch):
    """[(name, shape)] of torchvision's state_dict (test/data/classifier*/manifest.json)"""
    with open(os.path.join(ROOT, "test", "data", "classifier", "manifest.json")) as f:
        for m in json.load(f)["models"]:
            if m["arch"] == arch:
                return [(n, s) for n, s, _, _ in m["tensors"]]
    with open(os.path.join(ROOT, "test", "data", "classifier_tx", "manifest.json")) as f:
        return [(n, s) for n, s, _ in json.load(f)["tensors"][arch + ":1"]]


def swin_index():
    """torchvision's relative_position_index for a 7x7 window"""
    r, c = np.arange(49) // 7, np.arange(49) % 7
    return ((r[:, None] - r[None, :] + 6) * 13 + (c[:, None] - c[None, :] + 6)).reshape(-1).astype(np.int64)


def seeded_state_dict(arch, num_classes, seed):
    """torchvision's names and shapes with num_classes rows in the final linear, seeded values as
    test/gen_classify_reference.py gave torchvision"""
    sd = {}
    for name, shape in tensor_list(arch):
        if name.endswith("relative_position_index"):
            sd[name] = swin_index()
            continue
        if name.startswith(FINAL[arch] + "."):
            shape = [num_classes] + list(shape[1:])
        shape = tuple(shape)
        sd[name] = cs.fill(seed, name, shape, *cs.fill_rule(name, shape))
    return sd


class Classify(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not have_lib():
            raise unittest.SkipTest("libsarco.so not built")
        cls.tmp = tempfile.TemporaryDirectory()
        with open(os.path.join(DATA, "gradcam.json")) as f:
            cls.cases = json.load(f)["cases"]
        cls.maps = np.load(os.path.join(DATA, "gradcam.npz"))

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def model(self, case, config=None):
        import sarco
        out = os.path.join(self.tmp.name, f"{case['arch']}-{'-'.join(map(str, case['seeds']))}.safetensors")
        sds = [(f"s{s}", seeded_state_dict(case["arch"], case["num_classes"], s)) for s in case["seeds"]]
        if len(sds) == 1:
            convert.convert(case["arch"], {"num_classes": case["num_classes"]}, sds[0][1], out, config)
        else:
            convert.convert_folds(case["arch"], {"num_classes": case["num_classes"]}, sds, out, config)
        return sarco.Model(out, backend="cpu")

    def check_case(self, i):
        case = self.cases[i]
        x = cs.fill(case["input_seed"], "input", case["input"], 1.0, 0.0)
        with self.model(case) as m:
            r = m.classify(x)
            ref_logits = np.array(case["logits"], np.float64).reshape(len(case["seeds"]), -1)
            got = np.array(r["logits"], np.float64).reshape(ref_logits.shape)
            rel = np.linalg.norm(got - ref_logits) / np.linalg.norm(ref_logits)
            per = np.array(case["per_fold"]).reshape(ref_logits.shape)
            # relative L2 for logits of norm >= 1, absolute below (a single logit near 0, where the
            # probability is a coin flip, inflates the relative error: VGG/Swin reach 1.0-1.3e-5 there)
            self.assertLess(np.linalg.norm(got - ref_logits), 1e-5 * max(1.0, np.linalg.norm(ref_logits)))
            np.testing.assert_allclose(np.array(r["per_fold"]).reshape(per.shape), per, atol=1e-5)
            np.testing.assert_allclose(np.ravel(r["probability"]), per.mean(0), atol=1e-5)
            np.testing.assert_allclose(np.ravel(r["fold_sd"]), per.std(0), atol=1e-5)
            target = None if case["target"] < 0 else case["target"]
            cam = m.gradcam(x, target=target)
        ref = self.maps[f"case{i}"]
        self.assertEqual(cam.shape, ref.shape)
        d = float(np.abs(cam - ref).max())
        print(f"  {case['arch']} classes {case['num_classes']} folds {len(case['seeds'])} {case['input']}: "
              f"logits rel L2 {rel:.1e}, Grad-CAM max |d| {d:.1e}")
        self.assertLess(d, CAM_MAX)

    def test_resnet50(self):
        self.check_case(0)
        self.check_case(1)

    def test_densenet121(self):
        self.check_case(2)

    def test_efficientnet_b0(self):
        self.check_case(3)

    def test_vgg19(self):
        self.check_case(4)

    def test_ensemble(self):
        self.check_case(5)

    def test_convnext_tiny(self):
        self.check_case(6)

    def test_swin_t(self):
        self.check_case(7)

    def test_preprocess(self):
        import sarco
        ref = np.load(os.path.join(DATA, "preprocess.npz"))
        case = self.cases[3]
        worst, worst_pil = 0.0, 0.0
        for key in ref.files:
            if key.endswith("/pil"):
                continue
            name, size = key.split("/")
            h, w = map(int, size.split("x"))
            with self.model(case, {"classify": {"size": [h, w], "channels": 3}}) as m:
                x = m.preprocess(os.path.join(DATA, name))[0]
            d = float(np.abs(x - ref[key]).max())
            worst = max(worst, d)
            self.assertLess(d, 1e-5, key)
            if key + "/pil" in ref.files:
                dp = float(np.abs(x - ref[key + "/pil"]).max())
                worst_pil = max(worst_pil, dp)
                self.assertLess(dp, 1.0 / 255 + 1e-6, key)
        print(f"  preprocessing vs torchvision max |d| {worst:.1e}; vs PIL uint8 {worst_pil:.2e} "
              f"({worst_pil * 255:.2f}/255)")
        # mean/std and single-channel luma
        with self.model(case, {"classify": {"size": [60, 90], "mean": [0.485, 0.456, 0.406],
                                            "std": [0.229, 0.224, 0.225]}}) as m:
            x = m.preprocess(os.path.join(DATA, "colour.jpg"))[0]
        mean = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
        std = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]
        np.testing.assert_allclose(x, (ref["colour.jpg/60x90"] - mean) / std, atol=1e-4)
        del sarco

    def test_refusals(self):
        import sarco
        case = self.cases[3]
        with self.model(case, {"classify": {"size": [64, 64]}}) as m:
            tiny = sarco.Picture(np.zeros((1, 1, 1), np.float32), None, 8, "png", [])
            with self.assertRaisesRegex(sarco.SarcoError, "1x1 pixels is too small"):
                m.classify(tiny)
            with self.assertRaisesRegex(sarco.SarcoError, "tabular values given"):
                m.classify(os.path.join(DATA, "grey.png"), tabular={"age_years": 70})
            with self.assertRaisesRegex(sarco.SarcoError, "target 5"):
                m.gradcam(os.path.join(DATA, "grey.png"), target=5)
            # the reader's refusals reach classify with their messages (test/data/{jpeg,png} corpora)
            jpg, png = os.path.join(ROOT, "test", "data", "jpeg"), os.path.join(ROOT, "test", "data", "png")
            for path, msg in ((os.path.join(jpg, "good_1x1_grey.jpg"), "1x1 pixels is too small"),
                              (os.path.join(jpg, "bad_cmyk.jpg"), "CMYK"),
                              (os.path.join(jpg, "bad_60000x60000.jpg"), "past the cap"),
                              (os.path.join(jpg, "bad_truncated_scan.jpg"), "truncated"),
                              (os.path.join(png, "bad_truncated_idat.png"), "truncated")):
                with self.assertRaisesRegex(sarco.SarcoError, msg):
                    m.classify(path)
            cam = m.gradcam(os.path.join(DATA, "grey.png"))
            self.assertEqual(cam.shape, (180, 240))
            self.assertAlmostEqual(float(cam.max()), 1.0, places=5)
            self.assertGreaterEqual(float(cam.min()), 0.0)
        with self.model(case, {"classify": {"size": [64, 64], "zoom": 2}}) as m:
            with self.assertRaisesRegex(sarco.SarcoError, "unknown classify key \"zoom\""):
                m.classify(os.path.join(DATA, "grey.png"))

    def test_cli(self):
        import subprocess
        cli = os.environ.get("SARCO_CLI") or os.path.join(ROOT, "build", "sarco")
        if not os.path.exists(cli):
            self.skipTest("build/sarco not built")
        case = self.cases[5]  # the 2-fold ensemble
        with self.model(case, {"classify": {"size": [84, 84]}}) as m:
            path = m.path
            ref = m.classify(os.path.join(DATA, "grey.png"))
            refcam = m.gradcam(os.path.join(DATA, "grey.png"))
        d = self.tmp.name
        cam, rep = os.path.join(d, "cam.png"), os.path.join(d, "r.json")
        r = subprocess.run([cli, "classify", "--model", path, "--input", os.path.join(DATA, "grey.png"),
                            "--cam", cam, "--report", rep], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(rep) as f:
            out = json.load(f)
        self.assertEqual(out["folds"], 2)
        np.testing.assert_allclose(out["probability"][0], ref["probability"], atol=1e-9)
        np.testing.assert_allclose([p[0] for p in out["per_fold"]], ref["per_fold"], atol=1e-9)
        from sarco.picture import load_picture
        pic = load_picture(cam)
        self.assertEqual(pic.data.shape, (3, 180, 240))
        # the overlay is viridis over the grey: the hottest pixel of the map is the most yellow-green one
        hot = np.unravel_index(np.argmax(refcam), refcam.shape)
        cold = np.unravel_index(np.argmin(refcam), refcam.shape)
        self.assertGreater(pic.data[1][hot] - pic.data[2][hot], pic.data[1][cold] - pic.data[2][cold])
        lst, csv = os.path.join(d, "l.csv"), os.path.join(d, "out.csv")
        with open(lst, "w") as f:
            f.write(f"path\n{os.path.join(DATA, 'colour.jpg')}\n{os.path.join(d, 'missing.png')}\n")
        r = subprocess.run([cli, "classify", "--model", path, "--list", lst, "--report", csv],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 2, r.stderr)  # a row failed: bad input
        with open(csv) as f:
            rows = [line.rstrip("\n").split(",") for line in f]
        self.assertEqual(rows[0][:4], ["path", "status", "predicted", "probability_0"])
        self.assertEqual([len(x) for x in rows], [len(rows[0])] * 3)
        self.assertEqual(rows[1][1], "ok")
        self.assertIn("cannot open", rows[2][-1])
        r = subprocess.run([cli, "classify", "--model", path], capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("need --model and one of --input or --list", r.stderr)


if __name__ == "__main__":
    unittest.main()
