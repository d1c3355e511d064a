#!/opt/refenv/bin/python
"""libsarco vs nnUNetPredictor on the CPU, end to end, in one run.

    PYTHONPATH=python SARCO_LIBRARY=lib/libsarco.so /opt/refenv/bin/python bench/bench_nnunet.py [--repeat 3]

Builds two nnU-Net results folders with nnunetv2's own planner and its default network for the data
(no overrides): a 2-D PNG dataset (ExperimentPlanner, 2d) and a 3-D anisotropic CT dataset
(3d_fullres), two folds of seeded random weights each (test/gen_nnunet_pipeline_reference.py's
datasets), converts them with `sarco.convert --nnunet`, then times per image, model loaded once on
both sides:
  nnU-Net: predict_from_files_sequential([[image]], [output]) (read, preprocess, sliding window with
           mirroring, export, write; perform_everything_on_device=False, torch threads as given)
  sarco:   load_image, Model.segment (mirroring on, fp16 accumulation), save_labels
and reports seconds (median of --repeat), the ratio and the label agreement.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "test"))
sys.path.insert(0, os.path.join(ROOT, "python"))

import gen_nnunet_pipeline_reference as G  # noqa: E402


def results_folder(case, work, big_shape, big_spacing=None):
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments
    did, name, planner, plans_name, cfg = G.CASES[case][:5]
    rng = np.random.default_rng(7)
    {"d2": G.make_d2, "ct": G.make_ct}[case](os.environ["nnUNet_raw"], rng)
    extract_fingerprints([did], num_processes=1, check_dataset_integrity=False, clean=True, verbose=False,
                         show_progress_bar=False)
    plan_experiments([did], planner)
    pre = os.path.join(os.environ["nnUNet_preprocessed"], name)
    plans = json.load(open(os.path.join(pre, plans_name + ".json")))
    dj = json.load(open(os.path.join(pre, "dataset.json")))
    folder = G.write_folds(case, plans, dj, plans_name, cfg)
    # a bigger held-out image than the tiny training ones
    if case == "d2":
        from skimage import io
        lab = G.blobs(rng, big_shape, 2)
        im = np.clip(np.array([40, 150, 90], np.float64)[lab] + rng.normal(0, 18, lab.shape), 0, 255).astype(np.uint8)
        path = os.path.join(work, "big_0000.png")
        io.imsave(path, im, check_contrast=False)
    else:
        lab = G.blobs(rng, big_shape, 2)
        im = (np.array([-300.0, 45.0, 400.0])[lab] + rng.normal(0, 40, lab.shape)).astype(np.int16)
        path = os.path.join(work, "big_0000.nii.gz")
        G._save_nii(path, im, big_spacing)
    model = os.path.join(work, f"{case}.safetensors")
    r = subprocess.run([sys.executable, "-m", "sarco.convert", "--nnunet", folder, "--folds", "0", "1", "--out", model],
                       env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python")), capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(r.stderr)
    return folder, model, path, plans["configurations"][cfg]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--size2d", type=int, nargs=2, default=[160, 144], help="2-D image (rows, cols)")
    ap.add_argument("--size3d", type=int, nargs=3, default=[64, 72, 16], help="3-D image (z, y, x)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    import torch
    torch.set_num_threads(a.threads)
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    import sarco
    work = tempfile.mkdtemp(prefix="bench_nnunet_")
    G._env(work)
    rows = []
    try:
        for case, shape, sp in (("d2", tuple(a.size2d), None), ("ct", tuple(a.size3d), (3.0, 0.8, 0.8))):
            folder, model, img, cfgd = results_folder(case, work, shape, sp)
            ext = ".png" if case == "d2" else ".nii.gz"
            pred = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=True,
                                   perform_everything_on_device=False, device=torch.device("cpu"), verbose=False,
                                   verbose_preprocessing=False, allow_tqdm=False)
            pred.initialize_from_trained_model_folder(folder, use_folds=(0, 1))
            m = sarco.Model(model, backend="cpu")
            t_nn, t_sa = [], []
            for _ in range(a.repeat):
                out = os.path.join(work, f"nn_{case}")
                t0 = time.perf_counter()
                pred.predict_from_files_sequential([[img]], [out], save_probabilities=False, overwrite=True,
                                                   folder_with_segs_from_prev_stage=None)
                t_nn.append(time.perf_counter() - t0)
                out_s = os.path.join(work, f"sa_{case}{ext}")
                t0 = time.perf_counter()
                im = sarco.load_image(img)
                lab = m.segment(im)
                sarco.pipeline.save_labels(out_s, lab, max_label=2)
                t_sa.append(time.perf_counter() - t0)
                print(f"  {case}: nnU-Net {t_nn[-1]:.2f} s, sarco {t_sa[-1]:.2f} s", file=sys.stderr, flush=True)
            rw = pred.plans_manager.image_reader_writer_class()
            ref, _ = rw.read_seg(out + ext)
            ref = ref[0]
            got = np.asarray(lab.data)
            got = got.T[None] if case == "d2" else got.transpose(2, 1, 0)
            agree = float((got == ref).mean())
            m.close()
            rows.append((case, cfgd["patch_size"], cfgd["architecture"]["arch_kwargs"]["features_per_stage"],
                         shape, float(np.median(t_nn)), float(np.median(t_sa)), agree))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"threads: torch {a.threads}, sarco OpenMP default; median of {a.repeat}; mirroring on, 2 folds")
    print(f"{'case':5} {'image':>14} {'patch':>14} {'features':>22} {'nnU-Net s':>10} {'sarco s':>9} {'ratio':>6} "
          f"{'labels':>8}")
    for case, patch, feats, shape, tn, ts, agree in rows:
        print(f"{case:5} {str(shape):>14} {str(tuple(patch)):>14} {str(tuple(feats)):>22} {tn:10.3f} {ts:9.3f} "
              f"{tn / ts:6.2f} {100 * agree:7.3f}%")


if __name__ == "__main__":
    main()
