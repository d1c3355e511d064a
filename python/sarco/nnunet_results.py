"""Reads an nnU-Net v2 results folder (RESULTS/DatasetXXX_Name/Trainer__Plans__CONFIG) without
torch: plans.json (configuration inheritance resolved as PlansManager does), dataset.json, the
folds' checkpoints and the cross-validation postprocessing, and turns them into the sarco.config
that `python3 -m sarco.convert --nnunet` writes (schema: docs/nnunet.md).

What nnU-Net's nnUNetPredictor.initialize_from_trained_model_folder reads, read the same way:
  - the network: plans["configurations"][c]["architecture"] ("network_class_name", "arch_kwargs"),
    input channels = len(dataset.json "channel_names"), outputs = the label manager's
    num_segmentation_heads (labels without "ignore", or the regions);
  - per fold: checkpoint["network_weights"], checkpoint["init_args"]["configuration"] and
    checkpoint["inference_allowed_mirroring_axes"] (the last fold's value wins, as in nnU-Net);
  - postprocessing: the (pp_fns, pp_fn_kwargs) pair nnunetv2/postprocessing/
    remove_connected_components.py pickles (only remove_all_but_largest_component_from_segmentation
    exists), or the postprocessing.json written beside it.
"""
import glob
import json
import os
import pickle
import re

import numpy as np

from . import torchfile
from .archs import ConvertError

__all__ = ["NETWORKS", "read_plans_configuration", "find_folds", "read_postprocessing", "label_info",
           "nnunet_config"]

# dynamic-network-architectures class -> sarco arch name
NETWORKS = {
    "dynamic_network_architectures.architectures.unet.PlainConvUNet": "nnunet.PlainConvUNet",
    "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet": "nnunet.ResidualEncoderUNet",
}

_PP_MODULE = "nnunetv2.postprocessing.remove_connected_components"
_PP_FN = "remove_all_but_largest_component_from_segmentation"


def _load_json(path, what):
    if not os.path.isfile(path):
        raise ConvertError(f"{path}: no {what} (is this an nnU-Net results folder "
                           "RESULTS/DatasetXXX_Name/Trainer__Plans__CONFIG?)")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConvertError(f"{path}: not valid JSON ({e})") from None


def read_plans_configuration(plans, name):
    """The configuration `name` with its inherits_from chain merged (parent first, the child's
    keys win), as PlansManager._internal_resolve_configuration_inheritance does."""
    confs = plans.get("configurations")
    if not isinstance(confs, dict):
        raise ConvertError("plans.json has no \"configurations\" object")
    seen = []
    chain = []
    while True:
        if name not in confs:
            raise ConvertError(f"plans.json has no configuration {name!r} (it has: {', '.join(confs)})")
        if name in seen:
            raise ConvertError(f"plans.json: circular inherits_from: {' -> '.join(seen + [name])}")
        seen.append(name)
        c = confs[name]
        if not isinstance(c, dict):
            raise ConvertError(f"plans.json: configuration {name!r} is not an object")
        chain.append(c)
        if "inherits_from" not in c:
            break
        name = c["inherits_from"]
    merged = {}
    for c in reversed(chain):
        merged.update(c)
    return merged


def _fold_key(name):
    m = re.fullmatch(r"fold_(\d+)", name)
    return (0, int(m.group(1))) if m else (1, name)


def find_folds(model_dir, folds, checkpoint):
    """[(fold folder name, checkpoint path)]. folds: None or ["all"] = every fold_<N> folder holding
    the checkpoint (nnU-Net's auto-detection: fold_all is left out); otherwise fold numbers, or
    "fold_all" / an explicit folder name."""
    if folds is None or list(folds) == ["all"]:
        names = sorted((d for d in os.listdir(model_dir)
                        if re.fullmatch(r"fold_\d+", d) and os.path.isfile(os.path.join(model_dir, d, checkpoint))),
                       key=_fold_key)
        if not names:
            raise ConvertError(f"{model_dir}: no fold_<N>/{checkpoint} found")
    else:
        names = []
        for f in folds:
            f = str(f)
            name = f"fold_{int(f)}" if f.isdigit() else f
            if not re.fullmatch(r"fold_(\d+|all)", name):
                raise ConvertError(f"--folds: {f!r} is neither a fold number, \"all\" nor \"fold_all\"")
            if name in names:
                raise ConvertError(f"--folds names {name} twice")
            names.append(name)
    out = []
    for name in names:
        path = os.path.join(model_dir, name, checkpoint)
        if not os.path.isfile(path):
            raise ConvertError(f"{path}: no such checkpoint (fold {name} missing; --checkpoint picks another file)")
        out.append((name, path))
    return out


# ---- postprocessing.pkl: a restricted unpickler ----

class _PPFunction(str):
    """Stand-in for the one postprocessing function nnU-Net pickles by reference."""


class _PPUnpickler(pickle.Unpickler):
    _ALLOWED = {
        (_PP_MODULE, _PP_FN): lambda: _PPFunction("largest_component"),
        ("numpy", "dtype"): torchfile._np_dtype,
        ("numpy.core.multiarray", "scalar"): torchfile._np_scalar,
        ("numpy._core.multiarray", "scalar"): torchfile._np_scalar,
        ("_codecs", "encode"): torchfile._codecs_encode,
    }

    def find_class(self, module, name):
        f = self._ALLOWED.get((module, name))
        if f is None:
            raise ConvertError(f"postprocessing.pkl refers to {module}.{name}; only nnU-Net's "
                               f"{_PP_FN} and plain values are allowed")
        if (module, name) == (_PP_MODULE, _PP_FN):
            return f()
        return f

    def persistent_load(self, pid):
        raise ConvertError("postprocessing.pkl holds a persistent reference; not an nnU-Net postprocessing file")


def _plain_labels(v, where):
    """int | numpy int | tuple/list of those (nested) -> int | list, checked."""
    if isinstance(v, (bool, np.bool_)):
        raise ConvertError(f"{where}: labels_or_regions holds a boolean")
    if isinstance(v, (int, np.integer)):
        if int(v) < 0 or int(v) > 65535:
            raise ConvertError(f"{where}: label {int(v)} is outside 0..65535")
        return int(v)
    if isinstance(v, (list, tuple)) and v:
        return [_plain_labels(x, where) for x in v]
    raise ConvertError(f"{where}: labels_or_regions must be labels, regions or a list of them, not {v!r}")


def _pp_steps(fns, kwargs, where):
    if not isinstance(fns, (list, tuple)) or not isinstance(kwargs, (list, tuple)) or len(fns) != len(kwargs):
        raise ConvertError(f"{where}: expected two lists of equal length (functions, keyword arguments)")
    steps = []
    for fn, kw in zip(fns, kwargs):
        if str(fn) not in ("largest_component", _PP_FN):
            raise ConvertError(f"{where}: unknown postprocessing function {fn!r}")
        if not isinstance(kw, dict) or set(kw) - {"labels_or_regions", "background_label"} or \
                "labels_or_regions" not in kw:
            raise ConvertError(f"{where}: unexpected arguments {kw!r} for {_PP_FN}")
        step = {"op": "largest_component", "labels_or_regions": _plain_labels(kw["labels_or_regions"], where)}
        if "background_label" in kw:
            step["background_label"] = _plain_labels(kw["background_label"], where)
            if not isinstance(step["background_label"], int):
                raise ConvertError(f"{where}: background_label must be one label")
        steps.append(step)
    return steps


def _read_pp_pkl(path):
    try:
        with open(path, "rb") as f:
            obj = _PPUnpickler(f).load()
    except ConvertError as e:
        raise ConvertError(f"{path}: {e}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            torchfile.TorchFileError) as e:
        raise ConvertError(f"{path}: not a postprocessing pickle ({e})") from None
    if not isinstance(obj, (tuple, list)) or len(obj) != 2:
        raise ConvertError(f"{path}: expected the pair (pp_fns, pp_fn_kwargs)")
    return _pp_steps(obj[0], obj[1], path)


def _read_pp_json(path):
    j = _load_json(path, "postprocessing.json")
    if not isinstance(j, dict) or "postprocessing_fns" not in j or "postprocessing_kwargs" not in j:
        raise ConvertError(f"{path}: no postprocessing_fns / postprocessing_kwargs")
    return _pp_steps(j["postprocessing_fns"], j["postprocessing_kwargs"], path)


def read_postprocessing(model_dir, fold_names, path=None):
    """(steps, source file) or (None, None). path: an explicit postprocessing.pkl/.json. Otherwise
    the model folder's own postprocessing.pkl, else crossval_results_folds_<folds>/ for exactly the
    converted folds, else the single crossval_results_folds_* folder there is; .pkl before .json."""
    if path is not None:
        if not os.path.isfile(path):
            raise ConvertError(f"{path}: no such postprocessing file")
        return (_read_pp_json(path) if path.endswith(".json") else _read_pp_pkl(path)), path
    nums = [n[len("fold_"):] for n in fold_names]
    candidates = [model_dir, os.path.join(model_dir, "crossval_results_folds_" + "_".join(nums))]
    found = sorted(glob.glob(os.path.join(model_dir, "crossval_results_folds_*")))
    if len(found) == 1:
        candidates.append(found[0])
    for d in candidates:
        for name, reader in (("postprocessing.pkl", _read_pp_pkl), ("postprocessing.json", _read_pp_json)):
            p = os.path.join(d, name)
            if os.path.isfile(p):
                return reader(p), p
    return None, None


# ---- labels ----

def label_info(dataset):
    """(num_segmentation_heads, classes, regions_class_order) from dataset.json as nnU-Net's
    LabelManager sees it. classes: names by output label value ("ignore" is no output)."""
    labels = dataset.get("labels")
    if not isinstance(labels, dict) or "background" not in labels:
        raise ConvertError("dataset.json: \"labels\" must be an object with \"background\": 0")
    has_regions = any(isinstance(v, (list, tuple)) and len(v) > 1 for v in labels.values())
    rco = dataset.get("regions_class_order")
    if not has_regions:
        by_value = {}
        for name, v in labels.items():
            if name == "ignore":
                continue
            if isinstance(v, list) and len(v) == 1:
                v = v[0]
            if isinstance(v, bool) or not isinstance(v, int) or v < 0 or v > 65535:
                raise ConvertError(f"dataset.json: label {name!r} has value {v!r}, not an integer in 0..65535")
            if v in by_value:
                raise ConvertError(f"dataset.json: labels {by_value[v]!r} and {name!r} share the value {v}")
            by_value[v] = name
        classes = [by_value.get(i, f"label_{i}") for i in range(max(by_value) + 1)]
        return len(by_value), classes, None
    if not isinstance(rco, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in rco):
        raise ConvertError("dataset.json: region labels need \"regions_class_order\" (a list of integers)")
    regions = [(k, v) for k, v in labels.items() if k != "ignore" and not (
        (isinstance(v, int) and v == 0) or (isinstance(v, list) and set(v) == {0}))]
    if len(regions) != len(rco):
        raise ConvertError(f"dataset.json: {len(regions)} regions but regions_class_order has {len(rco)} entries")
    classes = ["background"] + [f"label_{i}" for i in range(1, max(rco + [0]) + 1)]
    for (name, _), value in zip(regions, rco):
        classes[value] = name
    return len(regions), classes, rco


def _plans_value(plans, conf, key):
    if key in conf:
        return conf[key]
    if key in plans:
        return plans[key]
    raise ConvertError(f"plans.json has no {key!r} (for the configuration or the whole plans)")


def nnunet_config(model_dir, folds=None, checkpoint="checkpoint_final.pth", postprocessing=None, reader="auto",
                  read_checkpoint=None):
    """Reads the results folder. Returns (arch, kwargs, [(fold name, network_weights)], extra
    sarco.config entries ("classes", "nnunet"), notes). read_checkpoint(path, reader) -> (obj, used)."""
    model_dir = os.path.normpath(os.fspath(model_dir))
    if not os.path.isdir(model_dir):
        raise ConvertError(f"{model_dir}: no such folder (give RESULTS/DatasetXXX_Name/Trainer__Plans__CONFIG)")
    plans = _load_json(os.path.join(model_dir, "plans.json"), "plans.json")
    dataset = _load_json(os.path.join(model_dir, "dataset.json"), "dataset.json")
    if not isinstance(plans, dict) or not isinstance(dataset, dict):
        raise ConvertError(f"{model_dir}: plans.json and dataset.json must hold JSON objects")
    fold_paths = find_folds(model_dir, folds, checkpoint)

    parts = os.path.basename(model_dir).split("__")
    dir_conf = parts[2] if len(parts) == 3 else None
    weights, confs, mirror, trainers = [], set(), None, set()
    for name, path in fold_paths:
        obj, _ = read_checkpoint(path, reader)
        if not isinstance(obj, dict) or "network_weights" not in obj:
            raise ConvertError(f"{path}: not an nnU-Net checkpoint (no \"network_weights\")")
        init = obj.get("init_args") if isinstance(obj.get("init_args"), dict) else {}
        if isinstance(init.get("configuration"), str):
            confs.add(init["configuration"])
        if isinstance(obj.get("trainer_name"), str):
            trainers.add(obj["trainer_name"])
        axes = obj.get("inference_allowed_mirroring_axes")
        mirror = None if axes is None else [int(a) for a in axes]  # the last fold's, as nnU-Net
        weights.append((name, obj["network_weights"]))
        del obj
    if len(confs) > 1:
        raise ConvertError(f"the folds were trained with different configurations: {sorted(confs)}")
    conf_name = confs.pop() if confs else dir_conf
    if conf_name is None:
        raise ConvertError(f"{model_dir}: the checkpoints name no configuration and the folder is not "
                           "named Trainer__Plans__CONFIG")
    if dir_conf is not None and conf_name != dir_conf:
        raise ConvertError(f"the checkpoints were trained as {conf_name!r} but the folder says {dir_conf!r}")
    conf = read_plans_configuration(plans, conf_name)
    if conf.get("previous_stage") or conf.get("previous_stage_name"):
        raise ConvertError(f"configuration {conf_name!r} is a cascade stage (its input includes the previous "
                           "stage's segmentation); not supported")
    a = conf.get("architecture")
    if not isinstance(a, dict) or "network_class_name" not in a or not isinstance(a.get("arch_kwargs"), dict):
        raise ConvertError(f"plans.json configuration {conf_name!r} has no architecture.network_class_name / "
                           "arch_kwargs (plans from nnU-Net v2 before 2.4 are not supported)")
    # nnU-Net itself falls back to the class's last name when the module path moved
    short = {k.rsplit(".", 1)[1]: v for k, v in NETWORKS.items()}
    arch = NETWORKS.get(a["network_class_name"]) or short.get(str(a["network_class_name"]).rsplit(".", 1)[-1])
    if arch is None:
        raise ConvertError(f"network {a['network_class_name']!r} is not supported (supported: "
                           f"{', '.join(sorted(NETWORKS))})")
    channels = dataset.get("channel_names", dataset.get("modality"))
    if not isinstance(channels, dict) or not channels:
        raise ConvertError("dataset.json has no \"channel_names\"")
    heads, classes, rco = label_info(dataset)
    kwargs = dict(a["arch_kwargs"], input_channels=len(channels), num_classes=heads, deep_supervision=False)

    steps, pp_src = read_postprocessing(model_dir, [n for n, _ in fold_paths], postprocessing)
    nn = {
        "configuration": conf_name,
        "patch_size": conf.get("patch_size"),
        "spacing": conf.get("spacing"),
        "transpose_forward": _plans_value(plans, conf, "transpose_forward"),
        "transpose_backward": _plans_value(plans, conf, "transpose_backward"),
        "normalization_schemes": conf.get("normalization_schemes"),
        "use_mask_for_norm": conf.get("use_mask_for_norm"),
        "foreground_intensity_properties_per_channel": plans.get(
            "foreground_intensity_properties_per_channel", plans.get("foreground_intensity_properties_by_modality")),
    }
    for k in ("resampling_fn_data", "resampling_fn_data_kwargs", "resampling_fn_seg", "resampling_fn_seg_kwargs",
              "resampling_fn_probabilities", "resampling_fn_probabilities_kwargs"):
        nn[k] = conf.get(k)
    missing = [k for k, v in nn.items() if v is None]
    if missing:
        raise ConvertError(f"plans.json configuration {conf_name!r} lacks {', '.join(missing)}")
    nn.update({
        "inference_allowed_mirroring_axes": mirror,
        "labels": dataset["labels"],
        "regions_class_order": rco,
        "channel_names": channels,
        "file_ending": dataset.get("file_ending"),
        "postprocessing": steps,
    })
    notes = {"postprocessing_file": pp_src, "trainers": sorted(trainers)}
    return arch, kwargs, weights, {"classes": classes, "nnunet": nn}, notes
