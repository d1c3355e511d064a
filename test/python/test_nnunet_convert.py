"""python3 -m sarco.convert --nnunet on the fake results folder of test/gen_nnunet_reference.py
(plans.json with inherits_from, dataset.json, two fold checkpoints written by torch.save, the
cross-validation postprocessing), torch-free; and the two nnU-Net architecture checks against the
state_dicts dynamic-network-architectures itself produced. numpy only."""
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DATA = os.path.join(ROOT, "test", "data", "nnunet")
sys.path.insert(0, os.path.join(ROOT, "python"))

from sarco import archs, convert, nnunet_results, safetensors  # noqa: E402
from sarco.archs import ConvertError  # noqa: E402

FAKE = os.path.join(DATA, "results", "Dataset999_Fake", "nnUNetTrainer__nnUNetPlans__2d_small")


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def save(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f)


def read_st(path):
    """(name -> float64 array, sarco.config) by a few independent lines."""
    with open(path, "rb") as f:
        b = f.read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    meta = h.pop("__metadata__")
    kinds = {"F32": "<f4", "F16": "<f2", "F64": "<f8", "I64": "<i8"}
    out = {}
    for k, v in h.items():
        s, e = v["data_offsets"]
        out[k] = np.frombuffer(b[8 + n + s:8 + n + e], dtype=kinds[v["dtype"]]).reshape(v["shape"]).astype(np.float64)
    return out, json.loads(meta["sarco.config"])


class NnunetConvert(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="sarco-nnunet-")
        self.ref, self.ref_cfg = read_st(os.path.join(DATA, "fake_2folds.safetensors"))

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def out(self, name="m.safetensors"):
        return os.path.join(self.tmp, name)

    def copy_fake(self):
        d = os.path.join(tempfile.mkdtemp(dir=self.tmp), os.path.basename(FAKE))
        shutil.copytree(FAKE, d)
        return d

    def cli(self, *args):
        env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python"))
        return subprocess.run([sys.executable, "-m", "sarco.convert", *args], capture_output=True, text=True,
                              env=env, cwd=self.tmp, timeout=120)

    def test_cli_all_folds_torch_free_matches_the_reference_file(self):
        r = self.cli("--nnunet", FAKE, "--folds", "all", "--reader", "builtin", "--out", self.out())
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("folds fold_0 fold_1", r.stderr)
        self.assertIn("crossval_results_folds_0_1/postprocessing.pkl", r.stderr)
        got, cfg = read_st(self.out())
        self.assertEqual(cfg, self.ref_cfg)
        self.assertEqual(sorted(got), sorted(self.ref))
        for k in got:  # the reference file holds the same checkpoints read through torch
            np.testing.assert_array_equal(got[k], self.ref[k], err_msg=k)
        # every fold holds the whole network, without the duplicate keys
        f0 = sorted(k[len("fold.0."):] for k in got if k.startswith("fold.0."))
        f1 = sorted(k[len("fold.1."):] for k in got if k.startswith("fold.1."))
        self.assertEqual(f0, f1)
        self.assertEqual(len(f0) * 2, len(got))
        self.assertFalse(any(".all_modules." in k or ".decoder.encoder." in k for k in got))
        self.assertFalse(np.array_equal(got["fold.0.decoder.seg_layers.1.weight"],
                                        got["fold.1.decoder.seg_layers.1.weight"]))

    def test_config_holds_the_plans_settings_verbatim(self):
        plans, dataset = load(os.path.join(FAKE, "plans.json")), load(os.path.join(FAKE, "dataset.json"))
        cfg = self.ref_cfg
        nn = cfg["nnunet"]
        base, small = plans["configurations"]["2d"], plans["configurations"]["2d_small"]
        self.assertEqual(cfg["arch"], "nnunet.PlainConvUNet")
        self.assertEqual(cfg["folds"], ["fold_0", "fold_1"])
        self.assertEqual(cfg["classes"], ["background", "muscle", "fat"])
        self.assertEqual(nn["configuration"], "2d_small")
        self.assertEqual(nn["patch_size"], small["patch_size"])  # the child's own value
        self.assertEqual(nn["spacing"], base["spacing"])  # inherited
        for k in ("normalization_schemes", "use_mask_for_norm", "resampling_fn_data", "resampling_fn_data_kwargs",
                  "resampling_fn_seg", "resampling_fn_seg_kwargs", "resampling_fn_probabilities",
                  "resampling_fn_probabilities_kwargs"):
            self.assertEqual(nn[k], base[k], k)
        for k in ("transpose_forward", "transpose_backward", "foreground_intensity_properties_per_channel"):
            self.assertEqual(nn[k], plans[k], k)
        self.assertEqual(nn["labels"], dataset["labels"])
        self.assertEqual(nn["channel_names"], dataset["channel_names"])
        self.assertEqual(nn["file_ending"], ".png")
        self.assertIsNone(nn["regions_class_order"])
        self.assertEqual(nn["inference_allowed_mirroring_axes"], [0, 1])
        self.assertEqual(nn["postprocessing"], [{"op": "largest_component", "labels_or_regions": [1, 2]},
                                                {"op": "largest_component", "labels_or_regions": 2}])
        kw = cfg["kwargs"]
        self.assertEqual((kw["input_channels"], kw["num_classes"], kw["deep_supervision"]), (1, 3, False))
        self.assertEqual(kw["features_per_stage"], small["architecture"]["arch_kwargs"]["features_per_stage"])

    def test_one_fold_and_the_default_folds(self):
        s = convert.convert_nnunet(FAKE, self.out(), ["1"], reader="builtin")
        got, cfg = read_st(self.out())
        self.assertEqual((s["folds"], cfg["folds"]), (["fold_1"], ["fold_1"]))
        self.assertEqual(sorted(got), sorted("fold.0." + k[len("fold.1."):] for k in self.ref if k.startswith("fold.1.")))
        np.testing.assert_array_equal(got["fold.0.decoder.seg_layers.1.weight"],
                                      self.ref["fold.1.decoder.seg_layers.1.weight"])
        # no single-fold crossval folder: the only one there is still is the cross-validation's
        self.assertEqual(len(cfg["nnunet"]["postprocessing"]), 2)
        s = convert.convert_nnunet(FAKE, self.out("d.safetensors"), None, reader="builtin")
        self.assertEqual(s["folds"], ["fold_0", "fold_1"])

    def test_postprocessing_sources(self):
        d = self.copy_fake()
        cv = os.path.join(d, "crossval_results_folds_0_1")
        os.remove(os.path.join(cv, "postprocessing.pkl"))  # then the .json
        steps, src = nnunet_results.read_postprocessing(d, ["fold_0", "fold_1"])
        self.assertTrue(src.endswith("postprocessing.json"))
        self.assertEqual(steps, self.ref_cfg["nnunet"]["postprocessing"])
        os.remove(os.path.join(cv, "postprocessing.json"))
        convert.convert_nnunet(d, self.out(), ["0"], reader="builtin")
        self.assertIsNone(read_st(self.out())[1]["nnunet"]["postprocessing"])
        # an explicit file; a region (tuple) comes out as a list
        pp = os.path.join(self.tmp, "pp.pkl")
        shutil.copy(os.path.join(FAKE, "crossval_results_folds_0_1", "postprocessing.pkl"), pp)
        steps, _ = nnunet_results.read_postprocessing(d, ["fold_0"], pp)
        self.assertEqual(steps, self.ref_cfg["nnunet"]["postprocessing"])
        # nnU-Net's function pickles by reference; anything else is refused before it is called
        with open(pp, "wb") as f:
            f.write(pickle.dumps(([os.system], [{"labels_or_regions": 1}]), protocol=4))
        with self.assertRaisesRegex(ConvertError, "posix.system|os.system"):
            nnunet_results.read_postprocessing(d, ["fold_0"], pp)
        with open(pp, "wb") as f:
            f.write(pickle.dumps((["remove_all_but_largest_component_from_segmentation"], [{"x": 1}]), protocol=4))
        with self.assertRaisesRegex(ConvertError, "unexpected arguments"):
            nnunet_results.read_postprocessing(d, ["fold_0"], pp)
        self.assertEqual(nnunet_results._pp_steps(["largest_component"], [{"labels_or_regions": (1, (2, 3))}], "x"),
                         [{"op": "largest_component", "labels_or_regions": [1, [2, 3]]}])

    def test_errors_name_the_problem_and_write_nothing(self):
        r = self.cli("--nnunet", FAKE, "--folds", "0", "3", "--reader", "builtin", "--out", self.out())
        self.assertEqual(r.returncode, 1)
        self.assertIn("fold_3", r.stderr)
        self.assertFalse(os.path.exists(self.out()))
        d = self.copy_fake()
        os.remove(os.path.join(d, "plans.json"))
        r = self.cli("--nnunet", d, "--reader", "builtin", "--out", self.out())
        self.assertEqual(r.returncode, 1)
        self.assertIn("plans.json", r.stderr)
        self.assertFalse(os.path.exists(self.out()))
        r = self.cli("--nnunet", d, "--arch", "nnunet.PlainConvUNet", "--out", self.out())
        self.assertEqual(r.returncode, 2)
        self.assertIn("drop --arch", r.stderr)
        r = self.cli("--folds", "0", "--out", self.out())
        self.assertEqual(r.returncode, 2)
        for bad, msg in ((["x1"], "neither a fold number"), (["0", "0"], "twice")):
            with self.assertRaisesRegex(ConvertError, msg):
                convert.convert_nnunet(FAKE, self.out(), bad, reader="builtin")
        with self.assertRaisesRegex(ConvertError, "no fold_<N>/checkpoint_best.pth"):
            convert.convert_nnunet(FAKE, self.out(), None, "checkpoint_best.pth", reader="builtin")
        # plans whose network disagrees with the checkpoints: the tensor check names the fold
        d = self.copy_fake()
        p = load(os.path.join(d, "plans.json"))
        p["configurations"]["2d_small"]["architecture"]["arch_kwargs"]["features_per_stage"] = [4, 8, 32]
        save(os.path.join(d, "plans.json"), p)
        with self.assertRaisesRegex(ConvertError, "fold_0: .*encoder.stages.2"):
            convert.convert_nnunet(d, self.out(), None, reader="builtin")
        p["configurations"]["2d"]["inherits_from"] = "2d_small"
        save(os.path.join(d, "plans.json"), p)
        with self.assertRaisesRegex(ConvertError, "circular"):
            convert.convert_nnunet(d, self.out(), None, reader="builtin")
        os.rename(d, d.replace("__2d_small", "__2d"))
        with self.assertRaisesRegex(ConvertError, "trained as '2d_small' but the folder says '2d'"):
            convert.convert_nnunet(d.replace("__2d_small", "__2d"), self.out(), None, reader="builtin")
        self.assertFalse(os.path.exists(self.out()))

    def test_network_class_names(self):
        d = self.copy_fake()
        p = load(os.path.join(d, "plans.json"))
        arch = p["configurations"]["2d_small"]["architecture"]
        arch["network_class_name"] = "moved.elsewhere.PlainConvUNet"  # nnU-Net falls back to the last name
        save(os.path.join(d, "plans.json"), p)
        self.assertEqual(convert.convert_nnunet(d, self.out(), ["0"], reader="builtin")["arch"], "nnunet.PlainConvUNet")
        arch["network_class_name"] = "dynamic_network_architectures.architectures.unet.ResidualUNet"
        save(os.path.join(d, "plans.json"), p)
        with self.assertRaisesRegex(ConvertError, "ResidualUNet' is not supported"):
            convert.convert_nnunet(d, self.out("b.safetensors"), ["0"], reader="builtin")
        del p["configurations"]["2d_small"]["architecture"]
        del p["configurations"]["2d"]["architecture"]
        save(os.path.join(d, "plans.json"), p)
        with self.assertRaisesRegex(ConvertError, "before 2.4"):
            convert.convert_nnunet(d, self.out("b.safetensors"), ["0"], reader="builtin")

    def test_regions_and_ignore_label(self):
        n, classes, rco = nnunet_results.label_info(
            {"labels": {"background": 0, "whole": [1, 2, 3], "core": [2, 3], "enh": 3}, "regions_class_order": [1, 2, 3]})
        self.assertEqual((n, classes, rco), (3, ["background", "whole", "core", "enh"], [1, 2, 3]))
        n, classes, _ = nnunet_results.label_info({"labels": {"background": 0, "a": 1, "b": 2, "ignore": 3}})
        self.assertEqual((n, classes), (3, ["background", "a", "b"]))
        with self.assertRaisesRegex(ConvertError, "regions_class_order"):
            nnunet_results.label_info({"labels": {"background": 0, "whole": [1, 2]}})
        with self.assertRaisesRegex(ConvertError, "share the value"):
            nnunet_results.label_info({"labels": {"background": 0, "a": 1, "b": 1}})


class NnunetArchChecks(unittest.TestCase):
    """The converter's tensor lists against the state_dicts dynamic-network-architectures built."""

    def test_every_reference_variant_passes_and_wrong_kwargs_fail(self):
        m = load(os.path.join(DATA, "manifest.json"))
        self.assertGreaterEqual(len(m["variants"]), 6)
        for v in m["variants"]:
            t, cfg = read_st(os.path.join(DATA, v["model"]))
            mod = archs.get(cfg["arch"])
            kw = cfg["kwargs"]
            shapes = {k: t[k].shape for k in t}
            with self.subTest(variant=v["name"]):
                mod.check_tensors(mod.normalize_kwargs(kw), shapes)
                wrong = [{"num_classes": kw["num_classes"] + 1}, {"conv_bias": not kw["conv_bias"]},
                         {"input_channels": kw["input_channels"] + 1},
                         {"features_per_stage": kw["features_per_stage"][:-1] + [kw["features_per_stage"][-1] + 4]}]
                if "n_blocks_per_stage" in kw:
                    wrong.append({"n_blocks_per_stage": [b + 1 for b in kw["n_blocks_per_stage"]]})
                    wrong.append({"stem_channels": 5})
                else:
                    wrong.append({"n_conv_per_stage": [c + 1 for c in kw["n_conv_per_stage"]]})
                wrong.append({"n_conv_per_stage_decoder": [c + 1 for c in kw["n_conv_per_stage_decoder"]]})
                for w in wrong:
                    with self.assertRaises(ConvertError, msg=str(w)):
                        mod.check_tensors(mod.normalize_kwargs(dict(kw, **w)), shapes)

    def test_resenc_keywords(self):
        mod = archs.get("nnunet.ResidualEncoderUNet")
        _, cfg = read_st(os.path.join(DATA, "c_resenc2d_m.safetensors"))
        kw = cfg["kwargs"]
        with self.assertRaisesRegex(ConvertError, "BottleneckD"):
            mod.normalize_kwargs(dict(kw, block="BottleneckD"))
        with self.assertRaisesRegex(ConvertError, "n_blocks_per_stage must have 5 entries"):
            mod.normalize_kwargs(dict(kw, n_blocks_per_stage=[1, 2]))
        self.assertEqual(mod.normalize_kwargs(dict(kw, n_blocks_per_stage=2))["n_blocks_per_stage"], [2] * 5)


if __name__ == "__main__":
    unittest.main()
