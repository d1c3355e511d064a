"""sarco.torchfile (the torch-free torch.save reader) and sarco.convert. numpy only.

The .pt files and what they must hold come from test/gen_torch_checkpoints.py (run with torch);
safetensors output is parsed back here by a few independent lines, not by sarco's own reader."""
import collections
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import types
import unittest
import zipfile
from unittest import mock

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DATA = os.path.join(ROOT, "test", "data", "convert")
sys.path.insert(0, os.path.join(ROOT, "python"))

from sarco import archs, convert, safetensors, torchfile  # noqa: E402
from sarco.archs import ConvertError  # noqa: E402
from sarco.safetensors import BFloat16Array  # noqa: E402


def data(name):
    return os.path.join(DATA, name)


def load_json(name):
    with open(data(name)) as f:
        return json.load(f)


def flatten(obj, prefix=""):
    """Same walk as the generator: "/"-joined paths to arrays and to plain values."""
    arrays, values = {}, {}
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, (list, tuple)):
        items = enumerate(obj)
    else:
        if isinstance(obj, np.ndarray):
            arrays[prefix[:-1]] = obj
        else:
            values[prefix[:-1]] = obj.item() if isinstance(obj, np.generic) else obj
        return arrays, values
    for k, v in items:
        a, b = flatten(v, f"{prefix}{k}/")
        arrays.update(a)
        values.update(b)
    return arrays, values


ST_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
             "I8": "i1", "U8": "u1", "BOOL": "?"}


def parse_safetensors(path):
    """An independent parser: {name: (dtype name, shape, array)}, metadata. Checks the layout rules."""
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack("<Q", buf[:8])
    assert (8 + n) % 8 == 0, "data section not 8-byte aligned"
    text = buf[8:8 + n]
    assert text == text.rstrip(b" ") + b" " * (len(text) - len(text.rstrip(b" "))), "padding must be spaces"
    head = json.loads(text.decode("utf-8"))
    meta = head.pop("__metadata__", {})
    body = buf[8 + n:]
    out, pos = {}, 0
    for name, info in sorted(head.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        b, e = info["data_offsets"]
        assert b == pos, f"{name}: offsets not contiguous"
        pos = e
        arr = np.frombuffer(body[b:e], dtype=ST_DTYPES[info["dtype"]]).reshape(info["shape"])
        out[name] = (info["dtype"], tuple(info["shape"]), arr)
    assert pos == len(body), "data does not end at the end of the file"
    return out, meta


# ---- hand-written protocol-2 pickles, for what torch.save would never write ----

def p_global(mod, name):
    return b"c" + mod.encode() + b"\n" + name.encode() + b"\n"


def p_int(v):
    return b"J" + struct.pack("<i", v)


def p_str(s):
    s = s.encode()
    return b"X" + struct.pack("<I", len(s)) + s


def p_tuple(*items):
    return b"(" + b"".join(items) + b"t"


def p_call(fn, *args):
    return fn + p_tuple(*args) + b"R"


def p_storage(stype, key, numel):
    return p_tuple(p_str("storage"), p_global("torch", stype), p_str(key), p_str("cpu"), p_int(numel)) + b"Q"


def p_tensor(storage, offset, size, stride):
    return p_call(p_global("torch._utils", "_rebuild_tensor_v2"), storage, p_int(offset),
                  p_tuple(*map(p_int, size)), p_tuple(*map(p_int, stride)), b"\x89",
                  p_call(p_global("collections", "OrderedDict")))


def p_dict(**items):
    return b"\x80\x02}(" + b"".join(p_str(k) + v for k, v in items.items()) + b"u."


def make_zip(path, pkl, entries=None, byteorder=b"little"):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl)
        if byteorder is not None:
            z.writestr("archive/byteorder", byteorder)
        for k, v in (entries or {}).items():
            z.writestr(f"archive/data/{k}", v)


class TorchFileReader(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.expected = np.load(data("expected.npz"))
        cls.meta = load_json("expected.json")

    def test_every_file_holds_exactly_the_expected_arrays_and_values(self):
        self.assertGreaterEqual(len(self.meta["files"]), 4)
        for fname in self.meta["files"]:
            with self.subTest(file=fname):
                arrays, values = flatten(torchfile.load(data(fname)))
                want = {k.split(":", 1)[1]: k for k in self.expected.files if k.startswith(fname + ":")}
                self.assertEqual(sorted(arrays), sorted(want))
                for path, key in want.items():
                    got, exp = arrays[path], self.expected[key]
                    if key in self.meta["bf16_bits"]:
                        self.assertIsInstance(got, BFloat16Array, path)
                        got = got.bits()
                    else:
                        self.assertNotIsInstance(got, BFloat16Array, path)
                    self.assertEqual(got.dtype, exp.dtype, path)
                    self.assertEqual(got.shape, exp.shape, path)
                    self.assertTrue(got.flags.c_contiguous, path)
                    self.assertEqual(got.tobytes(), exp.tobytes(), path)
                self.assertEqual(values, self.meta["values"][fname])

    def test_plain_file_covers_the_awkward_cases(self):
        sd = torchfile.load(data("plain.pt"))
        self.assertIsInstance(sd, collections.OrderedDict)
        self.assertEqual(sd["half.weight"].dtype, np.float16)
        self.assertEqual(sd["bn.running_mean"].dtype, np.float64)
        self.assertEqual(sd["bn.num_batches_tracked"].shape, ())
        self.assertEqual(sd["empty"].shape, (0, 3))
        # the two views of one storage: their values follow from the storage, arange(40) * 0.5 - 3
        base = np.arange(40, dtype=np.float32) * 0.5 - 3.0
        np.testing.assert_array_equal(sd["shared.first"], base[3:9].reshape(2, 3))
        np.testing.assert_array_equal(sd["shared.second"], base[10:34:3])
        sd["shared.first"][0, 0] = 99  # copies, not views into one buffer
        self.assertNotIn(99, sd["shared.second"])
        np.testing.assert_array_equal(sd["bf16.weight"].to_float32().view(np.uint32) & 0xFFFF, 0)

    def test_big_endian_file_reads_the_same_values(self):
        sd = torchfile.load(data("bigendian.pt"))
        self.assertEqual(sd["a"].dtype, np.dtype("<f4"))
        np.testing.assert_array_equal(sd["a"], self.expected["bigendian.pt:a"])

    def test_unetr_checkpoint_matches_its_digests(self):
        import hashlib
        sd = torchfile.load(data("unetr_tiny.pt"))
        ref = load_json("unetr_tiny.json")["tensors"]
        self.assertEqual(list(sd), list(ref))
        for k, (dtype, shape, digest) in ref.items():
            self.assertEqual((str(sd[k].dtype), list(sd[k].shape)), (dtype, shape), k)
            self.assertEqual(hashlib.sha256(sd[k].tobytes()).hexdigest(), digest, k)

    def test_os_system_pickle_is_refused_and_never_called(self):
        with mock.patch("os.system") as s1, mock.patch("posix.system") as s2:
            with self.assertRaisesRegex(torchfile.TorchFileError, r"system.*refusing"):
                torchfile.load(data("malicious.pt"))
        s1.assert_not_called()
        s2.assert_not_called()

    def test_tensor_reaching_past_its_storage_is_refused(self):
        with self.assertRaisesRegex(torchfile.TorchFileError, r"reaches element 99 of a storage of 4"):
            torchfile.load(data("oob.pt"))

    def test_legacy_and_non_torch_files_are_refused_with_a_reason(self):
        with self.assertRaisesRegex(torchfile.TorchFileError, "legacy"):
            torchfile.load(data("legacy.pt"))
        with self.assertRaisesRegex(torchfile.TorchFileError, "not a zip"):
            torchfile.load(data("expected.json"))
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "x.pt")
            with zipfile.ZipFile(p, "w") as z:
                z.writestr("archive/other.bin", b"x")
            with self.assertRaisesRegex(torchfile.TorchFileError, "data.pkl"):
                torchfile.load(p)

    def test_handmade_pickles(self):
        floats = np.arange(4, dtype="<f4").tobytes()
        good = p_dict(t=p_tensor(p_storage("FloatStorage", "0", 4), 0, (2, 2), (1, 2)))
        bad = {
            "builtins.eval": (p_dict(x=p_call(p_global("builtins", "eval"), p_str("1+1"))), {}),
            "copyreg._reconstructor": (p_dict(x=p_call(p_global("copyreg", "_reconstructor"), b"N", b"N", b"N")),
                                       {}),
            "reaches element 4 of a storage of 4": (
                p_dict(t=p_tensor(p_storage("FloatStorage", "0", 4), 1, (2, 2), (1, 2))), {"0": floats}),
            "negative": (p_dict(t=p_tensor(p_storage("FloatStorage", "0", 4), 0, (2,), (-1,))), {"0": floats}),
            "ComplexFloatStorage": (p_dict(t=p_tensor(p_storage("ComplexFloatStorage", "0", 2), 0, (2,), (1,))),
                                    {"0": floats}),
            "entry holds": (p_dict(t=p_tensor(p_storage("FloatStorage", "0", 8), 0, (8,), (1,))), {"0": floats}),
            "no entry": (p_dict(t=p_tensor(p_storage("FloatStorage", "7", 4), 0, (4,), (1,))), {"0": floats}),
            "persistent id": (p_dict(t=p_str("x") + b"Q"), {}),
            "numpy dtype 'O'": (p_dict(t=p_call(p_global("numpy", "dtype"), p_str("O"), b"\x89", b"\x88")), {}),
            "size .* and stride .* differ": (p_dict(t=p_tensor(p_storage("FloatStorage", "0", 4), 0, (2, 2), (1,))),
                                             {"0": floats}),
        }
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "good.pt")
            make_zip(p, good, {"0": floats})
            t = torchfile.load(p)["t"]  # size (2, 2), stride (1, 2) over [0, 1, 2, 3]: a transpose
            np.testing.assert_array_equal(t, np.array([[0, 2], [1, 3]], dtype=np.float32))
            self.assertTrue(t.flags.c_contiguous)
            for msg, (pkl, entries) in bad.items():
                with self.subTest(msg):
                    make_zip(p, pkl, entries)
                    with self.assertRaisesRegex(torchfile.TorchFileError, msg):
                        torchfile.load(p)


class PermissiveArch:
    """A registry entry that keeps every tensor: lets the round trip cover every dtype."""
    NAME = "test.Any"

    @staticmethod
    def normalize_kwargs(kwargs):
        return dict(kwargs)

    @staticmethod
    def classify(name):
        return ("drop", "num_batches_tracked") if name.endswith("num_batches_tracked") else ("keep", None)

    @staticmethod
    def check_tensors(kwargs, shapes):
        pass


class Converter(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="sarco-convert-")
        archs.REGISTRY[PermissiveArch.NAME] = PermissiveArch
        self.expected = np.load(data("expected.npz"))

    def tearDown(self):
        archs.REGISTRY.pop(PermissiveArch.NAME, None)
        shutil.rmtree(self.tmp)

    def out(self, name="model.safetensors"):
        return os.path.join(self.tmp, name)

    def cli(self, *args):
        env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python"))
        return subprocess.run([sys.executable, "-m", "sarco.convert", *args], capture_output=True, text=True,
                              env=env, cwd=self.tmp, timeout=120)

    def test_round_trip_keeps_names_dtypes_shapes_values_and_config(self):
        s = convert.convert("test.Any", {"x": 1}, data("plain.pt"), self.out(), {"classes": ["a", "b"]},
                            reader="builtin")
        got, meta = parse_safetensors(self.out())
        want_names = [k.split(":", 1)[1] for k in self.expected.files if k.startswith("plain.pt:")]
        want_names.remove("bn.num_batches_tracked")
        self.assertEqual(sorted(got), sorted(want_names))
        self.assertEqual(s["dropped"], {"num_batches_tracked": 1})
        kinds = {"float32": "F32", "float16": "F16", "float64": "F64", "bool": "BOOL", "int32": "I32"}
        for name in want_names:
            exp = self.expected["plain.pt:" + name]
            dtype, shape, arr = got[name]
            self.assertEqual(dtype, "BF16" if name == "bf16.weight" else kinds[str(exp.dtype)], name)
            self.assertEqual(shape, exp.shape, name)
            self.assertEqual(arr.tobytes(), exp.tobytes(), name)
        self.assertEqual(meta["format"], "pt")
        self.assertEqual(json.loads(meta["sarco.config"]), {"arch": "test.Any", "kwargs": {"x": 1},
                                                            "classes": ["a", "b"]})
        # sarco's own reader agrees with the independent parse
        mine, mine_meta = safetensors.read(self.out())
        self.assertEqual(mine_meta, meta)
        for name, (_, _, arr) in got.items():
            a = mine[name].bits() if isinstance(mine[name], BFloat16Array) else mine[name]
            self.assertEqual(a.tobytes(), arr.tobytes())

    def test_unetr_cli_round_trip(self):
        extra = os.path.join(self.tmp, "extra.json")
        with open(extra, "w") as f:
            json.dump({"classes": ["background", "muscle", "bone"], "spacing_mm": [1.5, 1.5, 2.0]}, f)
        kw = load_json("unetr_tiny.json")["kwargs"]
        r = self.cli("--arch", "monai.UNETR", "--kwargs", json.dumps(kw), "--state-dict", data("unetr_tiny.pt"),
                     "--out", self.out(), "--config", extra)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("194 tensors", r.stderr)
        got, meta = parse_safetensors(self.out())
        sd = torchfile.load(data("unetr_tiny.pt"))
        self.assertEqual(sorted(got), sorted(sd))  # every key kept, unused cross-attention norms included
        for k, a in sd.items():
            self.assertEqual(got[k][0], "F16")
            self.assertEqual(got[k][2].tobytes(), a.tobytes(), k)
        cfg = json.loads(meta["sarco.config"])
        self.assertEqual(list(cfg), ["arch", "kwargs", "classes", "spacing_mm"])
        self.assertEqual(cfg["arch"], "monai.UNETR")
        self.assertEqual(cfg["classes"], ["background", "muscle", "bone"])
        full = dict(kw, proj_type="conv", norm_name="instance", conv_block=True, res_block=True, dropout_rate=0.0,
                    spatial_dims=3, qkv_bias=False, save_attn=False)
        self.assertEqual(cfg["kwargs"], full)

    def test_wrapped_checkpoint_is_unwrapped_and_prefix_stripped(self):
        convert.convert("test.Any", {}, data("wrapped.pt"), self.out(), reader="builtin")
        got, _ = parse_safetensors(self.out())
        inner = [k.split("state_dict/", 1)[1] for k in self.expected.files if k.startswith("wrapped.pt:state_dict/")]
        self.assertTrue(all(k.startswith("module.") for k in inner))
        self.assertEqual(sorted(got), sorted(k[len("module."):] for k in inner))
        for k in inner:
            self.assertEqual(got[k[len("module."):]][2].tobytes(), self.expected["wrapped.pt:state_dict/" + k].tobytes())

    def test_nnunet_checkpoint_drops_exactly_the_duplicates(self):
        ref = load_json("nnunet_like.json")
        s = convert.convert("nnunet.PlainConvUNet", ref["kwargs"], data("nnunet_like.pt"), self.out(),
                            reader="builtin")
        got, meta = parse_safetensors(self.out())
        self.assertEqual(sorted(got), sorted(ref["canonical_keys"]))
        self.assertEqual(s["dropped"], {"duplicate": len(ref["duplicate_keys"])})
        kw = json.loads(meta["sarco.config"])["kwargs"]
        self.assertEqual((kw["conv_op"], kw["norm_op"], kw["nonlin"], kw["dropout_op"]),
                         ("Conv2d", "InstanceNorm2d", "LeakyReLU", None))
        self.assertEqual((kw["deep_supervision"], kw["nonlin_first"]), (False, False))
        # a "duplicate" that differs from its original, or has none, is an error
        obj = torchfile.load(data("nnunet_like.pt"))
        dup = next(k for k in ref["duplicate_keys"] if k.startswith("decoder.encoder."))
        obj["network_weights"][dup] = obj["network_weights"][dup] + 1
        with self.assertRaisesRegex(ConvertError, "holds other values"):
            convert.convert("nnunet.PlainConvUNet", ref["kwargs"], obj, self.out("b.safetensors"))
        obj = torchfile.load(data("nnunet_like.pt"))
        dup = next(k for k in ref["duplicate_keys"] if ".all_modules.0." in k and not k.startswith("decoder."))
        del obj["network_weights"][dup.replace(".all_modules.0.", ".conv.")]
        with self.assertRaisesRegex(ConvertError, "lacks"):
            convert.convert("nnunet.PlainConvUNet", ref["kwargs"], obj, self.out("b.safetensors"))
        self.assertFalse(os.path.exists(self.out("b.safetensors")))

    def test_nnunet_kwargs_that_contradict_the_tensors_are_refused(self):
        ref = load_json("nnunet_like.json")
        for change, msg in (({"features_per_stage": [2, 4, 16]}, "encoder.stages.2.0.convs.0.conv.weight"),
                            ({"num_classes": 4}, "seg_layers"),
                            ({"n_stages": 2, "features_per_stage": [2, 4], "kernel_sizes": 3, "strides": [1, 2],
                              "n_conv_per_stage": 2, "n_conv_per_stage_decoder": 1}, "unexpected"),
                            ({"conv_bias": False}, "unexpected .*conv.bias")):
            with self.subTest(change=change), self.assertRaisesRegex(ConvertError, msg):
                convert.convert("nnunet.PlainConvUNet", dict(ref["kwargs"], **change), data("nnunet_like.pt"),
                                self.out(), reader="builtin")
        self.assertFalse(os.path.exists(self.out()))

    def test_unetr_checks_agree_with_monai_state_dicts(self):
        mod = archs.get("monai.UNETR")
        configs = load_json("unetr_configs.json")
        self.assertGreaterEqual(len(configs), 6)
        for c in configs:
            shapes = {k: tuple(v) for k, v in c["shapes"].items() if not k.endswith("num_batches_tracked")}
            with self.subTest(kwargs=c["kwargs"]):
                kw = mod.normalize_kwargs(c["kwargs"])
                mod.check_tensors(kw, shapes)  # the real MONAI key set passes
                self.assertTrue(all(mod.classify(k) == ("keep", None) for k in shapes))
                for wrong in ({"feature_size": kw["feature_size"] + 2}, {"hidden_size": 64, "num_heads": 2},
                              {"in_channels": kw["in_channels"] + 1}, {"out_channels": kw["out_channels"] + 1},
                              {"img_size": [s * 2 for s in kw["img_size"]]}, {"qkv_bias": not kw["qkv_bias"]},
                              {"res_block": not kw["res_block"]}, {"conv_block": not kw["conv_block"]},
                              {"proj_type": "perceptron" if kw["proj_type"] == "conv" else "conv"},
                              {"mlp_dim": 48}):
                    with self.assertRaises(ConvertError, msg=str(wrong)):
                        mod.check_tensors(mod.normalize_kwargs(dict(c["kwargs"], **wrong)), shapes)

    def test_kwargs_validation(self):
        mod = archs.get("monai.UNETR")
        base = {"in_channels": 1, "out_channels": 2, "img_size": 96}
        k = mod.normalize_kwargs(base)
        self.assertEqual((k["img_size"], k["feature_size"], k["hidden_size"], k["mlp_dim"], k["num_heads"]),
                         ([96, 96, 96], 16, 768, 3072, 12))
        self.assertEqual(mod.normalize_kwargs(dict(base, pos_embed="perceptron"))["proj_type"], "perceptron")
        for bad, msg in (({"pos_embedding": "conv"}, r"unknown keyword argument\(s\) pos_embedding"),
                         ({"img_size": 40}, "multiple of the patch size"),
                         ({"hidden_size": 100}, "divisible by num_heads"),
                         ({"res_block": 1}, "true or false"),
                         ({"dropout_rate": 2}, r"\[0.0, 1.0\]"),
                         ({"spatial_dims": 1}, "spatial_dims"),
                         ({"norm_name": 3}, "norm_name")):
            with self.subTest(bad=bad), self.assertRaisesRegex(ConvertError, msg):
                mod.normalize_kwargs(dict(base, **bad))
        with self.assertRaisesRegex(ConvertError, "missing required keyword argument 'img_size'"):
            mod.normalize_kwargs({"in_channels": 1, "out_channels": 2})
        nn = archs.get("nnunet.PlainConvUNet")
        kw = load_json("nnunet_like.json")["kwargs"]
        with self.assertRaisesRegex(ConvertError, "conv_op 'torch.nn.Conv1d' is not supported"):
            nn.normalize_kwargs(dict(kw, conv_op="torch.nn.Conv1d"))
        with self.assertRaisesRegex(ConvertError, "norm_op 'InstanceNorm3d' is not supported"):
            nn.normalize_kwargs(dict(kw, norm_op="InstanceNorm3d"))  # a 3-D norm in a 2-D net
        with self.assertRaisesRegex(ConvertError, "kernel_sizes must have n_stages = 3 entries"):
            nn.normalize_kwargs(dict(kw, kernel_sizes=[3, 3]))
        e = nn.normalize_kwargs(dict(kw, features_per_stage=8, kernel_sizes=3, strides=2, n_conv_per_stage=1,
                                     n_conv_per_stage_decoder=2))
        self.assertEqual((e["features_per_stage"], e["kernel_sizes"], e["strides"], e["n_conv_per_stage_decoder"]),
                         ([8] * 3, [[3, 3]] * 3, [[2, 2]] * 3, [2, 2]))

    def test_unknown_kwargs_and_arch_are_refused_by_the_cli(self):
        kw = dict(load_json("unetr_tiny.json")["kwargs"], patch_size=16)
        r = self.cli("--arch", "monai.UNETR", "--kwargs", json.dumps(kw), "--state-dict", data("unetr_tiny.pt"),
                     "--out", self.out())
        self.assertEqual(r.returncode, 1)
        self.assertIn("unknown keyword argument(s) patch_size", r.stderr)
        r = self.cli("--arch", "monai.SwinUNETR", "--kwargs", "{}", "--state-dict", data("unetr_tiny.pt"),
                     "--out", self.out())
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, r"unknown architecture 'monai.SwinUNETR'; known: .*monai.UNETR")
        r = self.cli("--arch", "monai.UNETR", "--kwargs", "{not json", "--state-dict", data("unetr_tiny.pt"),
                     "--out", self.out())
        self.assertEqual(r.returncode, 1)
        self.assertIn("--kwargs is not valid JSON", r.stderr)
        r = self.cli("--arch", "monai.UNETR", "--kwargs", json.dumps(load_json("unetr_tiny.json")["kwargs"]),
                     "--state-dict", data("malicious.pt"), "--out", self.out())
        self.assertEqual(r.returncode, 1)
        self.assertIn("refusing", r.stderr)
        self.assertFalse(os.path.exists(self.out()))

    def test_extra_config_may_not_override_arch_or_kwargs(self):
        with self.assertRaisesRegex(ConvertError, "must not set arch"):
            convert.convert("test.Any", {}, data("plain.pt"), self.out(), {"arch": "x"}, reader="builtin")

    def test_not_a_state_dict(self):
        with self.assertRaisesRegex(ConvertError, "'epoch', 'best_metric'.* are not tensors"):
            convert.extract_state_dict({"epoch": 1, "best_metric": 0.5, "w": np.zeros(2)})
        with self.assertRaisesRegex(ConvertError, "holds a list"):
            convert.extract_state_dict([np.zeros(2)])
        sd = convert.extract_state_dict({"model": {"module._orig_mod.a": np.zeros(1), "module._orig_mod.b": np.ones(1)}})
        self.assertEqual(list(sd), ["a", "b"])

    def test_interrupted_write_leaves_no_file(self):
        # 1. the target folder does not exist
        missing = os.path.join(self.tmp, "no-such-dir", "m.safetensors")
        with self.assertRaisesRegex(ConvertError, "cannot write"):
            convert.convert("test.Any", {}, data("plain.pt"), missing, reader="builtin")
        self.assertFalse(os.path.exists(os.path.dirname(missing)))
        # 2. the write fails half-way: no file at --out, no temporary left, an old file untouched
        with open(self.out(), "wb") as f:
            f.write(b"previous model")
        calls = []
        real = safetensors._le_bytes

        def failing(a):
            calls.append(1)
            if len(calls) == 4:
                raise OSError(28, "No space left on device")
            return real(a)

        with mock.patch.object(safetensors, "_le_bytes", failing):
            with self.assertRaisesRegex(ConvertError, "No space left"):
                convert.convert("test.Any", {}, data("plain.pt"), self.out(), reader="builtin")
            self.assertEqual(len(calls), 4)
            with self.assertRaises(KeyboardInterrupt):
                with mock.patch.object(safetensors, "_le_bytes", side_effect=KeyboardInterrupt):
                    convert.convert("test.Any", {}, data("plain.pt"), self.out("new.safetensors"), reader="builtin")
        with open(self.out(), "rb") as f:
            self.assertEqual(f.read(), b"previous model")
        self.assertEqual(sorted(os.listdir(self.tmp)), ["model.safetensors"])

    def test_permissions_follow_the_umask(self):
        old = os.umask(0o027)
        try:
            convert.convert("test.Any", {}, data("bigendian.pt"), self.out(), reader="builtin")
        finally:
            os.umask(old)
        self.assertEqual(os.stat(self.out()).st_mode & 0o777, 0o640)


if __name__ == "__main__":
    unittest.main()
