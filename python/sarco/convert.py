"""Converts a PyTorch checkpoint (torch.save of a state_dict) into a libsarco model file.

    python3 -m sarco.convert --arch monai.UNETR \\
        --kwargs '{"in_channels": 1, "out_channels": 30, "img_size": 96}' \\
        --state-dict best_metric_model.pth --out thigh_unetr.safetensors [--config extra.json]
    python3 -m sarco.convert --nnunet RESULTS/Dataset042_Muscle/nnUNetTrainer__nnUNetPlans__2d \\
        [--folds 0 1 | all] [--checkpoint checkpoint_final.pth] --out muscle.safetensors

The output is one safetensors file: the tensors under the framework's own names, and in
__metadata__ "format": "pt" and "sarco.config": {"arch", "kwargs" (the reference constructor's
keywords, defaults filled in), plus every entry of --config (class names, preprocessing and
inference settings)}. The checkpoint is read with torch.load(weights_only=True) when torch is
installed, else (or when that refuses a plain-data checkpoint) with sarco.torchfile, which needs
only numpy. Nothing but tensors and plain values is ever unpickled.
"""
import argparse
import collections
import json
import os
import pickle
import sys
from collections.abc import Mapping

import numpy as np

from . import archs, nnunet_results, safetensors, torchfile
from .archs import ConvertError

__all__ = ["ConvertError", "convert", "convert_folds", "convert_nnunet", "read_checkpoint", "extract_state_dict",
           "main"]

# keys under which training code nests the weights (nnU-Net: network_weights)
WRAPPERS = ("state_dict", "model_state_dict", "network_weights", "model")
PREFIXES = ("module.", "_orig_mod.")  # DataParallel / DistributedDataParallel, torch.compile


def _import_torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def read_checkpoint(path, reader="auto"):
    """Returns (the unpickled object, "torch" | "builtin"). reader: "auto", "torch" or "builtin"."""
    if reader not in ("auto", "torch", "builtin"):
        raise ValueError(f"reader must be auto, torch or builtin, not {reader!r}")
    if not os.path.isfile(path):
        raise ConvertError(f"{path}: no such file")
    torch = _import_torch() if reader != "builtin" else None
    if reader == "torch" and torch is None:
        raise ConvertError("--reader torch: torch is not importable here")
    why_not_torch = None
    if torch is not None:
        try:
            return torch.load(path, map_location="cpu", weights_only=True), "torch"
        except (pickle.UnpicklingError, RuntimeError, ValueError, EOFError) as e:
            if reader == "torch":
                raise ConvertError(f"{path}: torch.load(weights_only=True) refused it: {e}") from None
            why_not_torch = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    try:
        return torchfile.load(path), "builtin"
    except torchfile.TorchFileError as e:
        more = f" (torch.load(weights_only=True) failed too: {why_not_torch})" if why_not_torch else ""
        raise ConvertError(f"{e}{more}") from None


def _is_torch_tensor(v):
    return type(v).__module__.split(".")[0] == "torch" and hasattr(v, "detach") and hasattr(v, "dtype")


def _to_numpy(name, v):
    if isinstance(v, np.ndarray):
        return v
    t = v.detach().cpu()
    if str(t.dtype) == "torch.bfloat16":
        import torch
        return safetensors.BFloat16Array.from_bits(t.contiguous().view(torch.int16).numpy().view(np.uint16).copy())
    try:
        return t.contiguous().numpy().copy()
    except (TypeError, RuntimeError) as e:
        raise ConvertError(f"{name}: tensor of dtype {t.dtype} cannot be converted ({e})") from None


def extract_state_dict(obj):
    """The name -> array mapping inside a checkpoint: unwraps {"state_dict"|"model_state_dict"|
    "network_weights"|"model": ...} and strips a prefix every key shares ("module.", "_orig_mod.")."""
    for _ in range(len(WRAPPERS) + 1):
        if not isinstance(obj, Mapping):
            raise ConvertError(f"the checkpoint holds a {type(obj).__name__}, not a state_dict (a name -> tensor "
                               "dict); save model.state_dict(), not the model")
        tensors = {k: v for k, v in obj.items() if isinstance(v, np.ndarray) or _is_torch_tensor(v)}
        if obj and len(tensors) == len(obj):
            break
        inner = next((w for w in WRAPPERS if isinstance(obj.get(w), Mapping)), None)
        if inner is None:
            if not obj:
                raise ConvertError("the checkpoint's state_dict is empty")
            other = [repr(k) for k in obj if k not in tensors][:5]
            raise ConvertError(f"not a state_dict: {', '.join(other)} {'is' if len(other) == 1 else 'are'} not "
                               f"tensors, and none of the wrapper keys {', '.join(WRAPPERS)} holds a dict")
        obj = obj[inner]
    else:
        raise ConvertError("the checkpoint nests wrapper dicts too deeply")
    bad = [k for k in obj if not isinstance(k, str)]
    if bad:
        raise ConvertError(f"state_dict keys must be strings, found {bad[0]!r}")
    names = list(obj)
    changed = True
    while changed:
        changed = False
        for p in PREFIXES:
            if names and all(n.startswith(p) and len(n) > len(p) for n in names):
                names = [n[len(p):] for n in names]
                changed = True
    out = collections.OrderedDict()
    for new, (old, v) in zip(names, obj.items()):
        if new in out:
            raise ConvertError(f"two tensors are named {new!r} once the prefix is stripped")
        out[new] = _to_numpy(old, v)
    return out


def _config_json(arch_name, kwargs, extra):
    config = {"arch": arch_name, "kwargs": kwargs}
    if extra is not None:
        if not isinstance(extra, Mapping):
            raise ConvertError("--config must hold a JSON object")
        clash = [k for k in ("arch", "kwargs") if k in extra]
        if clash:
            raise ConvertError(f"--config must not set {' or '.join(clash)} (use --arch / --kwargs)")
        config.update(extra)
    try:
        return json.dumps(config, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ConvertError(f"sarco.config cannot be written as JSON: {e}") from None


def _nonfinite(a):
    if isinstance(a, safetensors.BFloat16Array):
        a = a.to_float32()
    if a.dtype.kind != "f":
        return 0
    return int(a.size - np.count_nonzero(np.isfinite(a)))


def _checked_tensors(arch, mod, kw, state_dict, reader):
    """The tensors the architecture keeps from one checkpoint (a path or a loaded object), every
    duplicate shown equal to its original and every shape checked. Returns (tensors, dropped
    counts, reader used)."""
    if isinstance(state_dict, Mapping):
        obj, used = state_dict, "given"
    else:
        obj, used = read_checkpoint(os.fspath(state_dict), reader)
    sd = extract_state_dict(obj)
    del obj

    kept = collections.OrderedDict()
    dropped = collections.Counter()
    dups = []
    for name, a in sd.items():
        what, info = mod.classify(name)
        if what == "keep":
            kept[name] = a
        elif what == "drop":
            dropped[info] += 1
        elif what == "duplicate":
            dups.append((name, info))
        else:
            raise AssertionError(f"{arch}.classify returned {what!r}")
    for name, originals in dups:
        present = [o for o in originals if o in kept]
        if not present:
            raise ConvertError(f"{name} is a copy of {' or '.join(originals)}, which the state_dict lacks")
        a = sd[name]
        if not any(kept[o].shape == a.shape and type(kept[o]) is type(a) and kept[o].dtype == a.dtype
                   and kept[o].tobytes() == a.tobytes() for o in present):  # bitwise, NaNs included
            raise ConvertError(f"{name} should be a copy of {' or '.join(present)} but holds other values")
        dropped["duplicate"] += 1
    for name, a in kept.items():
        try:
            safetensors.dtype_name(a)
        except ValueError as e:
            raise ConvertError(f"{name}: {e}") from None
    mod.check_tensors(kw, {n: tuple(a.shape) for n, a in kept.items()})
    return kept, dropped, used


def _write(out, tensors, config):
    try:
        safetensors.write(out, tensors, {"sarco.config": config, "format": "pt"})
    except OSError as e:
        raise ConvertError(f"cannot write {out}: {e.strerror or e}") from None


def convert(arch, kwargs, state_dict, out, extra_config=None, reader="auto"):
    """Converts state_dict (a checkpoint file, or an already loaded checkpoint object) to the
    model file out. Returns a summary dict. Raises ConvertError (a ValueError) with the reason;
    out is then left as it was."""
    mod = archs.get(arch)
    kw = mod.normalize_kwargs(kwargs)
    config = _config_json(arch, kw, extra_config)
    kept, dropped, used = _checked_tensors(arch, mod, kw, state_dict, reader)
    _write(out, kept, config)
    nonfinite = sum(_nonfinite(a) for a in kept.values())
    return {"out": os.fspath(out), "arch": arch, "tensors": len(kept), "bytes": os.path.getsize(out),
            "dropped": dict(dropped), "reader": used, "nonfinite": nonfinite}


def convert_folds(arch, kwargs, folds, out, extra_config=None, reader="auto"):
    """Several trainings of one architecture (cross-validation folds) in one model file: folds is
    a list of (name, checkpoint path or loaded object); tensor t of fold i is stored as
    "fold.<i>.<t>" and sarco.config gets "folds": [names]. Returns convert's summary."""
    if not folds:
        raise ConvertError("no folds to convert")
    names = [n for n, _ in folds]
    if len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
        raise ConvertError(f"fold names must be distinct non-empty strings, not {names}")
    if extra_config is not None and "folds" in extra_config:
        raise ConvertError("--config must not set folds")
    mod = archs.get(arch)
    kw = mod.normalize_kwargs(kwargs)
    config = _config_json(arch, kw, dict(extra_config or {}, folds=names))
    tensors, dropped, used = collections.OrderedDict(), collections.Counter(), set()
    for i, (name, sd) in enumerate(folds):
        try:
            kept, d, u = _checked_tensors(arch, mod, kw, sd, reader)
        except ConvertError as e:
            raise ConvertError(f"{name}: {e}") from None
        tensors.update((f"fold.{i}.{k}", a) for k, a in kept.items())
        dropped.update(d)
        used.add(u)
    _write(out, tensors, config)
    nonfinite = sum(_nonfinite(a) for a in tensors.values())
    return {"out": os.fspath(out), "arch": arch, "tensors": len(tensors), "bytes": os.path.getsize(out),
            "dropped": dict(dropped), "reader": "/".join(sorted(used)), "nonfinite": nonfinite, "folds": names}


def convert_nnunet(model_dir, out, folds=None, checkpoint="checkpoint_final.pth", postprocessing=None,
                   reader="auto"):
    """Converts an nnU-Net v2 results folder (RESULTS/DatasetXXX_Name/Trainer__Plans__CONFIG): every
    selected fold's weights in one file, with the inference settings of plans.json / dataset.json
    and the cross-validation postprocessing (docs/nnunet.md). folds: None or ["all"] = every
    fold_<N> folder holding the checkpoint; else fold numbers (or "fold_all")."""
    arch, kwargs, weights, extra, notes = nnunet_results.nnunet_config(
        model_dir, folds, checkpoint, postprocessing, reader, read_checkpoint)
    s = convert_folds(arch, kwargs, weights, out, extra, reader)
    s.update(notes)
    return s


def _json_arg(text, what):
    if text.startswith("@"):
        with open(text[1:], encoding="utf-8") as f:
            text = f.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ConvertError(f"{what} is not valid JSON: {e}") from None


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="python3 -m sarco.convert",
        description="Convert a PyTorch state_dict (torch.save), or an nnU-Net v2 results folder, into a libsarco "
                    "model file (safetensors).")
    p.add_argument("--arch", help=f"architecture: {', '.join(archs.names())}")
    p.add_argument("--kwargs", help="the reference constructor's keyword arguments as a JSON object (or @file.json)")
    p.add_argument("--state-dict", help="the checkpoint written by torch.save")
    p.add_argument("--nnunet", metavar="MODEL_DIR",
                   help="an nnU-Net v2 results folder RESULTS/DatasetXXX_Name/Trainer__Plans__CONFIG (instead of "
                        "--arch/--kwargs/--state-dict)")
    p.add_argument("--folds", nargs="+", metavar="F",
                   help="with --nnunet: fold numbers (or fold_all), or 'all' for every fold_<N> folder found "
                        "(the default)")
    p.add_argument("--checkpoint", default="checkpoint_final.pth",
                   help="with --nnunet: the checkpoint file in each fold folder (default checkpoint_final.pth)")
    p.add_argument("--postprocessing", metavar="FILE",
                   help="with --nnunet: a postprocessing.pkl/.json to use instead of the one found in the folder")
    p.add_argument("--out", required=True, help="the model file to write (.safetensors)")
    p.add_argument("--config", help="JSON file with more sarco.config entries (class names, pipeline settings)")
    p.add_argument("--reader", choices=("auto", "torch", "builtin"), default="auto",
                   help="how to read the checkpoint: torch.load(weights_only=True), the built-in "
                        "torch-free reader, or auto (torch when importable; default)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    a = p.parse_args(argv)
    if a.nnunet:
        clash = [o for o, v in (("--arch", a.arch), ("--kwargs", a.kwargs), ("--state-dict", a.state_dict),
                                ("--config", a.config)) if v]
        if clash:
            p.error(f"--nnunet reads everything from the results folder; drop {', '.join(clash)}")
    else:
        missing = [o for o, v in (("--arch", a.arch), ("--kwargs", a.kwargs), ("--state-dict", a.state_dict))
                   if not v]
        if missing:
            p.error(f"the following arguments are required: {', '.join(missing)} (or --nnunet MODEL_DIR)")
        extra_opts = [o for o, v in (("--folds", a.folds), ("--postprocessing", a.postprocessing)) if v]
        if extra_opts:
            p.error(f"{', '.join(extra_opts)} only go with --nnunet")
    try:
        if a.nnunet:
            s = convert_nnunet(a.nnunet, a.out, a.folds, a.checkpoint, a.postprocessing, a.reader)
        else:
            kwargs = _json_arg(a.kwargs, "--kwargs")
            extra = None
            if a.config:
                with open(a.config, encoding="utf-8") as f:
                    try:
                        extra = json.load(f)
                    except json.JSONDecodeError as e:
                        raise ConvertError(f"--config {a.config} is not valid JSON: {e}") from None
            s = convert(a.arch, kwargs, a.state_dict, a.out, extra, a.reader)
    except (ConvertError, OSError) as e:
        msg = e.strerror + f": {e.filename}" if isinstance(e, OSError) and e.strerror else str(e)
        print(f"sarco.convert: error: {msg}", file=sys.stderr)
        return 1
    if not a.quiet:
        drops = ", ".join(f"{n} {k}" for k, n in sorted(s["dropped"].items())) or "none"
        folds = f", folds {' '.join(s['folds'])}" if s.get("folds") else ""
        print(f"sarco.convert: wrote {s['out']}: {s['arch']}{folds}, {s['tensors']} tensors, "
              f"{s['bytes'] / 1e6:.2f} MB (read with {s['reader']}; dropped: {drops})", file=sys.stderr)
        if "postprocessing_file" in s:
            print(f"sarco.convert: postprocessing: {s['postprocessing_file'] or 'none found'}", file=sys.stderr)
        if s["nonfinite"]:
            print(f"sarco.convert: warning: {s['nonfinite']} NaN/Inf weight values", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
