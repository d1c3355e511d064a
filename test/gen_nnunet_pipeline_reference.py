#!/opt/refenv/bin/python
"""Reference outputs of nnU-Net v2's inference pipeline for test/test_nnunet_pipeline.c and
test/python/test_nnunet_pipeline.py.

Run from the repository root with the reference environment (torch + nnunetv2):
    /opt/refenv/bin/python test/gen_nnunet_pipeline_reference.py [--work DIR]

Three tiny datasets go through nnunetv2's own fingerprint extraction and planner (nnUNet_raw,
nnUNet_preprocessed and nnUNet_results point into a temporary work folder):
  d2   Dataset901_Png2d: grey PNGs (NaturalImage2DIO), channel "US" -> ZScoreNormalization,
       configuration 2d, ExperimentPlanner (nnUNetPlans)
  ct   Dataset902_Ct3d: NIfTI CT with anisotropic spacing (x, y, z) = (3.0, 0.8, 0.8) mm (thick axis x: transpose_forward [2, 0, 1]), channel "CT" ->
       CTNormalization, configuration 3d_fullres, ExperimentPlanner; test images at other spacings,
       so data (order 3, separate z) and logits (order 1) are resampled
  re   Dataset903_ResEnc: NIfTI MR-like volumes with a zero background (cropping, z-score inside the
       mask), nnUNetPlannerResEncM, configuration 3d_fullres
The patch size and the network (stages, features) are then overridden in the plans so everything
stays small and the sliding window takes several steps. Two folds get seeded random weights with the
segmentation layer scaled up (so the labels are not constant), saved as checkpoint_final.pth, and
nnUNetPredictor (CPU, perform_everything_on_device=False) predicts the held-out images with and without
mirroring. A postprocessing.pkl (largest component on the foreground and on label 1) is written for
ct and applied with nnU-Net's own function.

Writes test/data/nnunet_pipeline/<case>/:
  plans.json, dataset.json, postprocessing.json (ct)
  model.safetensors     both folds through `python3 -m sarco.convert --nnunet` (when the converter
                        knows --nnunet; otherwise fold_<f>.npz state dicts are kept in the work folder)
  img<i>.png|.nii.gz     held-out inputs
  lab<i>_mirror.npy, lab<i>_nomirror.npy   nnU-Net's labels (uint8, nnU-Net array order: (z, y, x) or
                        (1, y, x) for PNG), written by nnU-Net's own exporter (png/nii read back)
  pp<i>.npy             preprocessed input (float32, (c, model grid...)), bbox<i>.npy (int64 (ndim, 2))
  logits<i>_mirror.npy  the fold-averaged fp16 logits on the model grid (float16) before export
  gauss.npy             compute_gaussian(patch, 1/8, 10, fp16) as float16
  steps<i>.json         compute_steps_for_sliding_window on the padded preprocessed shape
  lab<i>_pp.npy, lab<i>_nomirror_pp.npy (ct)   the labels after the stored postprocessing
  resample<i>.npy       (ct) resample_data_or_seg_to_shape of a float32 test array (order 3, separate z)
"""
import argparse
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile

import numpy as np

OUT = "test/data/nnunet_pipeline"
SEED = 1234


def _env(work):
    for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        d = os.path.join(work, k)
        os.makedirs(d, exist_ok=True)
        os.environ[k] = d


def blobs(rng, shape, nlab, spacing=None):
    """Label map of a few ellipsoids (labels 1..nlab) and an image whose intensity follows them."""
    grids = np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape], indexing="ij")
    lab = np.zeros(shape, np.uint8)
    for l in range(1, nlab + 1):
        for _ in range(2):
            c = [rng.uniform(0.2 * s, 0.8 * s) for s in shape]
            r = [rng.uniform(0.12 * s, 0.28 * s) for s in shape]
            d = sum(((g - ci) / ri) ** 2 for g, ci, ri in zip(grids, c, r))
            lab[d < 1] = l
    return lab


def make_d2(raw, rng):
    ds = os.path.join(raw, "Dataset901_Png2d")
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        os.makedirs(os.path.join(ds, sub), exist_ok=True)
    from skimage import io
    def img_of(lab):
        base = np.array([40, 150, 90], np.float64)[np.minimum(lab, 2)]
        im = base + rng.normal(0, 18, lab.shape)
        return np.clip(im, 0, 255).astype(np.uint8)
    for i in range(6):
        lab = blobs(rng, (52, 60), 2)
        io.imsave(os.path.join(ds, "imagesTr", f"us_{i:03d}_0000.png"), img_of(lab), check_contrast=False)
        io.imsave(os.path.join(ds, "labelsTr", f"us_{i:03d}.png"), lab, check_contrast=False)
    tests = []
    for i, shape in enumerate([(70, 83), (28, 45)]):  # the second is smaller than the patch on axis 0
        lab = blobs(rng, shape, 2)
        p = os.path.join(ds, "imagesTs", f"t{i}_0000.png")
        io.imsave(p, img_of(lab), check_contrast=False)
        tests.append(p)
    json.dump({"channel_names": {"0": "US"}, "labels": {"background": 0, "muscle": 1, "fascia": 2},
               "numTraining": 6, "file_ending": ".png"}, open(os.path.join(ds, "dataset.json"), "w"), indent=1)
    return tests


def _save_nii(path, arr_zyx, spacing_xyz):
    import SimpleITK as sitk
    im = sitk.GetImageFromArray(arr_zyx)
    im.SetSpacing(tuple(float(s) for s in spacing_xyz))
    im.SetOrigin((10.0, -20.0, 5.0))
    sitk.WriteImage(im, path)


def make_ct(raw, rng):
    ds = os.path.join(raw, "Dataset902_Ct3d")
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        os.makedirs(os.path.join(ds, sub), exist_ok=True)
    def img_of(lab):
        base = np.array([-300.0, 45.0, 400.0], np.float64)[lab]
        return (base + rng.normal(0, 40, lab.shape)).astype(np.int16)
    # the thick axis is x (the file's first axis), so nnU-Net's transpose_forward moves it first
    for i in range(6):
        lab = blobs(rng, (40, 44, 10), 2)  # (z, y, x)
        _save_nii(os.path.join(ds, "imagesTr", f"ct_{i:03d}_0000.nii.gz"), img_of(lab), (3.0, 0.8, 0.8))
        _save_nii(os.path.join(ds, "labelsTr", f"ct_{i:03d}.nii.gz"), lab, (3.0, 0.8, 0.8))
    tests = []
    # (shape zyx, spacing xyz): the first resamples in-plane and along the thick axis (separate z), the
    # second only in-plane
    for i, (shape, sp) in enumerate([((37, 41, 9), (2.5, 0.85, 0.9)), ((30, 52, 12), (3.0, 0.7, 0.7))]):
        lab = blobs(rng, shape, 2)
        p = os.path.join(ds, "imagesTs", f"t{i}_0000.nii.gz")
        _save_nii(p, img_of(lab), sp)
        tests.append(p)
    json.dump({"channel_names": {"0": "CT"}, "labels": {"background": 0, "muscle": 1, "bone": 2},
               "numTraining": 6, "file_ending": ".nii.gz"}, open(os.path.join(ds, "dataset.json"), "w"), indent=1)
    return tests


def make_re(raw, rng):
    ds = os.path.join(raw, "Dataset903_ResEnc")
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        os.makedirs(os.path.join(ds, sub), exist_ok=True)
    def img_of(lab, shape):
        base = np.array([0.0, 300.0, 520.0], np.float64)[lab]
        body = blobs(rng, shape, 1) > 0
        body |= lab > 0
        im = np.where(body, 150 + base + rng.normal(0, 30, shape), 0.0)
        # a zero frame (cropped away) and a hole inside the body (filled by the crop mask)
        im[:, :4, :] = 0
        im[:, :, -5:] = 0
        return im.astype(np.float32)
    for i in range(6):
        shape = (24, 30, 34)
        lab = blobs(rng, shape, 2)
        _save_nii(os.path.join(ds, "imagesTr", f"re_{i:03d}_0000.nii.gz"), img_of(lab, shape), (1.0, 1.0, 1.0))
        _save_nii(os.path.join(ds, "labelsTr", f"re_{i:03d}.nii.gz"), lab, (1.0, 1.0, 1.0))
    tests = []
    for i, (shape, sp) in enumerate([((26, 31, 37), (1.0, 1.0, 1.0)), ((20, 28, 30), (1.2, 1.1, 1.3))]):
        lab = blobs(rng, shape, 2)
        p = os.path.join(ds, "imagesTs", f"t{i}_0000.nii.gz")
        _save_nii(p, img_of(lab, shape), sp)
        tests.append(p)
    json.dump({"channel_names": {"0": "MR"}, "labels": {"background": 0, "muscle": 1, "fat": 2},
               "numTraining": 6, "file_ending": ".nii.gz"}, open(os.path.join(ds, "dataset.json"), "w"), indent=1)
    return tests


# case: dataset id, name, planner, plans name, configuration, patch size, arch overrides
CASES = {
    "d2": (901, "Dataset901_Png2d", "ExperimentPlanner", "nnUNetPlans", "2d", [32, 32],
           {"n_stages": 3, "features_per_stage": [8, 16, 32], "strides": [[1, 1], [2, 2], [2, 2]],
            "kernel_sizes": [[3, 3]] * 3, "n_conv_per_stage": [2, 2, 2], "n_conv_per_stage_decoder": [2, 2]}),
    "ct": (902, "Dataset902_Ct3d", "ExperimentPlanner", "nnUNetPlans", "3d_fullres", [8, 24, 24],
           {"n_stages": 3, "features_per_stage": [8, 16, 32], "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2]],
            "kernel_sizes": [[1, 3, 3], [3, 3, 3], [3, 3, 3]], "n_conv_per_stage": [2, 2, 2],
            "n_conv_per_stage_decoder": [2, 2]}),
    "re": (903, "Dataset903_ResEnc", "nnUNetPlannerResEncM", "nnUNetResEncUNetMPlans", "3d_fullres", [16, 16, 16],
           {"n_stages": 3, "features_per_stage": [8, 16, 32], "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]],
            "kernel_sizes": [[3, 3, 3]] * 3, "n_blocks_per_stage": [1, 2, 2], "n_conv_per_stage_decoder": [1, 1]}),
}


def plan(case):
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments
    did, name, planner, plans_name, cfg, patch, arch = CASES[case]
    extract_fingerprints([did], num_processes=1, check_dataset_integrity=True, clean=True, verbose=False,
                         show_progress_bar=False)
    plan_experiments([did], planner)
    pre = os.path.join(os.environ["nnUNet_preprocessed"], name)
    plans = json.load(open(os.path.join(pre, plans_name + ".json")))
    c = plans["configurations"][cfg]
    c["patch_size"] = patch
    c["batch_size"] = 2
    kw = c["architecture"]["arch_kwargs"]
    for k, v in arch.items():
        kw[k] = v
    return plans, json.load(open(os.path.join(pre, "dataset.json"))), plans_name, cfg


def write_folds(case, plans, dataset_json, plans_name, cfg, folds=(0, 1)):
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    did, name = CASES[case][:2]
    folder = os.path.join(os.environ["nnUNet_results"], name, f"nnUNetTrainer__{plans_name}__{cfg}")
    os.makedirs(folder, exist_ok=True)
    json.dump(plans, open(os.path.join(folder, "plans.json"), "w"), indent=1)
    json.dump(dataset_json, open(os.path.join(folder, "dataset.json"), "w"), indent=1)
    pm = PlansManager(plans)
    cm = pm.get_configuration(cfg)
    nout = pm.get_label_manager(dataset_json).num_segmentation_heads
    nin = len(dataset_json["channel_names"])
    mirror = tuple(range(len(cm.patch_size)))
    for f in folds:
        torch.manual_seed(SEED + 17 * f + did)
        net = nnUNetTrainer.build_network_architecture(pm, cm, nin, nout, enable_deep_supervision=False)
        with torch.no_grad():
            # scaled random init: wider logits so the argmax is not near-constant
            for n_, p in net.named_parameters():
                if "seg_layers" in n_:
                    p.mul_(4.0)
                elif n_.endswith(".bias"):
                    p.normal_(0, 0.2)
        os.makedirs(os.path.join(folder, f"fold_{f}"), exist_ok=True)
        torch.save({"network_weights": net.state_dict(), "trainer_name": "nnUNetTrainer",
                    "init_args": {"plans": plans, "configuration": cfg, "fold": f, "dataset_json": dataset_json},
                    "inference_allowed_mirroring_axes": mirror},
                   os.path.join(folder, f"fold_{f}", "checkpoint_final.pth"))
    return folder


def reference(case, folder, tests, out):
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.inference.sliding_window_prediction import compute_gaussian, compute_steps_for_sliding_window
    from acvl_utils.cropping_and_padding.padding import pad_nd_image
    torch.set_num_threads(2)
    os.makedirs(out, exist_ok=True)
    for fn in ("plans.json", "dataset.json"):
        shutil.copy(os.path.join(folder, fn), os.path.join(out, fn))
    ext = ".png" if tests[0].endswith(".png") else ".nii.gz"
    for mirror in (True, False):
        pred = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=mirror,
                               perform_everything_on_device=False, device=torch.device("cpu"), verbose=False,
                               verbose_preprocessing=False, allow_tqdm=False)
        pred.initialize_from_trained_model_folder(folder, use_folds=(0, 1), checkpoint_name="checkpoint_final.pth")
        tag = "mirror" if mirror else "nomirror"
        for i, t in enumerate(tests):
            shutil.copy(t, os.path.join(out, f"img{i}{ext}"))
            rw = pred.plans_manager.image_reader_writer_class()
            img, props = rw.read_images([t])
            pre = pred.configuration_manager.preprocessor_class(verbose=False)
            data, _, props2 = pre.run_case_npy(img, None, props, pred.plans_manager, pred.configuration_manager,
                                               pred.dataset_json)
            logits = pred.predict_logits_from_preprocessed_data(torch.from_numpy(data)).cpu()
            ofile = os.path.join(folder, f"pred_{tag}_{i}")
            from nnunetv2.inference.export_prediction import export_prediction_from_logits
            export_prediction_from_logits(logits, props2, pred.configuration_manager, pred.plans_manager,
                                          pred.dataset_json, ofile, False)
            seg, _ = rw.read_seg(ofile + ext)
            np.save(os.path.join(out, f"lab{i}_{tag}.npy"), seg[0].astype(np.uint8))
            if mirror:
                np.save(os.path.join(out, f"pp{i}.npy"), data.astype(np.float32))
                np.save(os.path.join(out, f"bbox{i}.npy"), np.array(props2["bbox_used_for_cropping"], np.int64))
                np.save(os.path.join(out, f"logits{i}_mirror.npy"), logits.numpy().astype(np.float16))
                padded, _ = pad_nd_image(data, pred.configuration_manager.patch_size, "constant", {"constant_values": 0},
                                         True, None)
                shp = padded.shape[1:]
                if len(pred.configuration_manager.patch_size) < len(shp):
                    shp = shp[1:]
                steps = compute_steps_for_sliding_window(shp, pred.configuration_manager.patch_size, 0.5)
                json.dump({"padded_shape": list(padded.shape[1:]), "steps": steps,
                           "props": {"spacing": [float(s) for s in props2["spacing"]],
                                     "shape_before_cropping": [int(s) for s in props2["shape_before_cropping"]],
                                     "shape_after_cropping_and_before_resampling":
                                         [int(s) for s in props2["shape_after_cropping_and_before_resampling"]]}},
                          open(os.path.join(out, f"steps{i}.json"), "w"), indent=1)
        if mirror:
            g = compute_gaussian(tuple(pred.configuration_manager.patch_size), sigma_scale=1. / 8,
                                 value_scaling_factor=10, device=torch.device("cpu"))
            np.save(os.path.join(out, "gauss.npy"), g.numpy().astype(np.float16))


def postprocessing_ref(out, folder, dataset_json):
    """A stored postprocessing (as nnUNetv2_determine_postprocessing writes it) applied by nnU-Net."""
    from nnunetv2.postprocessing.remove_connected_components import (apply_postprocessing,
                                                                     remove_all_but_largest_component_from_segmentation)
    fns = [remove_all_but_largest_component_from_segmentation] * 2
    kw = [{"labels_or_regions": [1, 2]}, {"labels_or_regions": 1}]
    cv = os.path.join(folder, "crossval_results_folds_0_1")
    os.makedirs(cv, exist_ok=True)
    with open(os.path.join(cv, "postprocessing.pkl"), "wb") as f:
        pickle.dump((fns, kw), f)
    json.dump({"postprocessing_fns": [fn.__name__ for fn in fns], "postprocessing_kwargs": kw},
              open(os.path.join(cv, "postprocessing.json"), "w"), indent=1)
    shutil.copy(os.path.join(cv, "postprocessing.json"), os.path.join(out, "postprocessing.json"))
    for i in range(2):
        for tag in ("mirror", "nomirror"):
            seg = np.load(os.path.join(out, f"lab{i}_{tag}.npy"))
            name = f"lab{i}_pp.npy" if tag == "mirror" else f"lab{i}_nomirror_pp.npy"
            np.save(os.path.join(out, name), apply_postprocessing(seg, fns, kw).astype(np.uint8))


def resample_ref(out, rng):
    """nnU-Net's data resampling (order 3, order_z 0, separate z) and a plain order-3 and order-1 case."""
    from nnunetv2.preprocessing.resampling.default_resampling import resample_data_or_seg_to_shape
    x = rng.normal(0, 1, (1, 5, 11, 9)).astype(np.float32)
    cases = {
        "sepz": ((8, 17, 6), (3.0, 0.8, 0.8), (1.9, 0.5, 1.2), 3),
        "iso3": ((7, 15, 12), (1.0, 1.0, 1.2), (0.7, 0.75, 0.9), 3),
        "iso1": ((4, 6, 13), (1.0, 1.0, 1.2), (1.2, 1.8, 0.8), 1),
    }
    res = {}
    for k, (shape, cur, new, order) in cases.items():
        y = resample_data_or_seg_to_shape(x, shape, cur, new, False, order, 0, None)
        np.save(os.path.join(out, f"resample_{k}.npy"), y.astype(np.float32))
        res[k] = {"shape": list(shape), "current_spacing": list(cur), "new_spacing": list(new), "order": order}
    np.save(os.path.join(out, "resample_in.npy"), x)
    json.dump(res, open(os.path.join(out, "resample.json"), "w"), indent=1)


def convert(folder, out):
    r = subprocess.run([sys.executable, "-m", "sarco.convert", "--nnunet", folder, "--folds", "0", "1",
                        "--out", os.path.join(out, "model.safetensors")],
                       env=dict(os.environ, PYTHONPATH="python"), capture_output=True, text=True)
    if r.returncode != 0:
        print(f"  sarco.convert --nnunet not available or failed ({r.stderr.strip().splitlines()[-1:]}); "
              f"checkpoints stay in {folder}")
        return False
    return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=None, help="work folder (default: a temporary one, removed)")
    ap.add_argument("--cases", nargs="*", default=list(CASES))
    a = ap.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="nnunet_ref_")
    _env(work)
    rng = np.random.default_rng(SEED)
    makers = {"d2": make_d2, "ct": make_ct, "re": make_re}
    for case in a.cases:
        print(f"== {case}", flush=True)
        crng = np.random.default_rng(SEED + list(CASES).index(case))
        tests = makers[case](os.environ["nnUNet_raw"], crng)
        plans, dj, plans_name, cfg = plan(case)
        folder = write_folds(case, plans, dj, plans_name, cfg)
        out = os.path.join(OUT, case)
        reference(case, folder, tests, out)
        if case == "ct":
            postprocessing_ref(out, folder, dj)
            resample_ref(out, rng)
        convert(folder, out)
        print(f"  results folder: {folder}", flush=True)
    if not a.work:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
