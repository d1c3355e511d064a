#!/usr/bin/env python3
"""`make demo`: a held-out synthetic thigh CT through `sarco segment`, muscle volumes measured versus
true, and Dice per muscle.

    PYTHONPATH=python SARCO_LIBRARY=lib/libsarco.so python3 tools/demo.py [--seed N] [--cli build/sarco]
    PYTHONPATH=python SARCO_LIBRARY=lib/libsarco.so python3 tools/demo.py --survey 1000..1011

Steps: generate the phantom (python/sarco/phantom.py; seed 1000 unless --seed, never a training
seed), write it as NIfTI (int16 HU) with its true label map, run the command-line tool on it exactly
as a user would, read the tool's JSON report and label map back, and compare with the phantom's
exact volumes (the continuous shapes' volumes, not voxel counts) and its label map.
Needs numpy and the built library only.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
import sarco  # noqa: E402
from sarco import phantom  # noqa: E402

# the thresholds test/python/test_demo.py asserts
MIN_MEAN_DICE = 0.85
MAX_VOLUME_ERROR_PERCENT = 5.0


def _rel(path):
    r = os.path.relpath(path)
    return path if r.startswith("..") else r


def survey(model, seeds, backend):
    """Mean and worst muscle Dice, mean and worst |volume error| and femur Dice for each seed."""
    import tempfile
    h = phantom.HELD_OUT
    print(f"{'seed':>5} {'mean Dice':>10} {'min Dice':>9} {'mean |err| %':>13} {'max |err| %':>12} {'femur Dice':>11}"
          "   volume error % per muscle (RF VL VI VM AD HS)")
    worst = []
    with sarco.Model(model, backend=backend) as m, tempfile.TemporaryDirectory() as d:
        for seed in seeds:
            p = phantom.generate(seed, h["shape"], h["spacing"])
            path = os.path.join(d, "ct.nii")
            phantom.write_nifti(path, p.image, p.affine, dtype=np.int16)
            lab = np.asarray(m.segment(sarco.load_image(path)).data)
            ev = sarco.evaluate(lab, p.labels, spacing=p.spacing, labels=list(range(1, len(phantom.CLASSES))))
            err = list(p.volume_errors_percent(lab).values())
            dice = [ev[l]["dice"] for l in phantom.MUSCLES]
            worst.append(np.max(np.abs(err)))
            print(f"{seed:>5} {np.mean(dice):>10.3f} {np.min(dice):>9.3f} {np.mean(np.abs(err)):>13.2f} "
                  f"{np.max(np.abs(err)):>12.2f} {ev[7]['dice']:>11.3f}   " + " ".join(f"{e:+.1f}" for e in err),
                  flush=True)
    print(f"every muscle within {MAX_VOLUME_ERROR_PERCENT:g} %: {sum(w < MAX_VOLUME_ERROR_PERCENT for w in worst)} "
          f"of {len(worst)} phantoms")
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=phantom.HELD_OUT["seed"], help="phantom seed (>= 1000: held out)")
    ap.add_argument("--model", default=os.path.join(ROOT, "weights", "demo_thigh_unetr.safetensors"))
    ap.add_argument("--cli", default=os.path.join(ROOT, "build", "sarco"), help="the sarco command-line tool")
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "demo"), help="where the files go")
    ap.add_argument("--backend", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--survey", metavar="FIRST..LAST",
                    help="instead: a line per held-out phantom FIRST..LAST on the demo grid (in-process, no files)")
    a = ap.parse_args(argv)
    if a.survey:
        try:
            first, last = (int(v) for v in a.survey.split(".."))
        except ValueError:
            ap.error(f"--survey wants FIRST..LAST, not {a.survey!r}")
        if first < 1000 or last < first:
            print(f"demo: survey seeds must be held out (1000 or more), ascending: {a.survey}", file=sys.stderr)
            return 2
        return survey(a.model, range(first, last + 1), a.backend)
    if a.seed < 1000:
        print(f"demo: seed {a.seed} is reserved for training (use 1000 or more)", file=sys.stderr)
        return 2
    os.makedirs(a.out, exist_ok=True)
    ct_path = os.path.join(a.out, "phantom_ct.nii.gz")
    truth_path = os.path.join(a.out, "phantom_labels_true.nii.gz")
    pred_path = os.path.join(a.out, "phantom_labels_sarco.nii.gz")
    report_path = os.path.join(a.out, "report.json")

    t0 = time.time()
    p = phantom.generate(a.seed, phantom.HELD_OUT["shape"], phantom.HELD_OUT["spacing"])
    phantom.write_nifti(ct_path, p.image, p.affine, dtype=np.int16)
    phantom.write_nifti(truth_path, p.labels, p.affine, intent_label=True)
    with open(os.path.join(a.out, "phantom_truth.json"), "w") as f:
        json.dump({"seed": p.seed, "classes": phantom.CLASSES, "volumes_ml": p.volumes_ml,
                   "label_volumes_ml": p.label_volumes_ml, "params": p.params}, f, indent=1)
    nx, ny, nz = p.image.shape
    sx, sy, sz = p.spacing
    print(f"phantom: seed {p.seed}, {nx} x {ny} x {nz} voxels of {sx:.2f} x {sy:.2f} x {sz:.2f} mm, "
          f"noise {p.params['noise_hu']:.0f} HU, {time.time() - t0:.1f} s -> {_rel(ct_path)}")

    cmd = [a.cli, "segment", "--model", a.model, "--input", ct_path, "--output", pred_path,
           "--report", report_path, "--backend", a.backend]
    print("$ " + " ".join(_rel(c) if os.path.sep in c else c for c in cmd), flush=True)
    r = subprocess.run(cmd)
    if r.returncode != 0:
        print(f"demo: sarco segment failed with exit code {r.returncode}", file=sys.stderr)
        return 1
    with open(report_path) as f:
        rep = json.load(f)
    measured = {e["name"]: e["volume_ml"] for e in rep["labels"]}
    pred = sarco.load_image(pred_path).data
    ev = sarco.evaluate(np.rint(pred).astype(np.uint16), p.labels, spacing=p.spacing,
                        labels=list(range(1, len(phantom.CLASSES))))
    st = rep["settings"]
    print(f"sarco segment: {st['backend']}, {st['windows']} windows of {'x'.join(map(str, st['roi']))} on the "
          f"{'x'.join(map(str, rep['preprocess']['model_dims']))} model grid, "
          f"{rep['timing_s']['total']:.2f} s in all\n")

    print(f"{'muscle':<22}{'true mL':>10}{'measured mL':>13}{'error %':>10}{'Dice':>8}")
    dice, err = [], []
    for l in range(1, len(phantom.CLASSES)):
        name = phantom.CLASSES[l]
        true, got, d = p.volumes_ml[name], measured[name], ev[l]["dice"]
        e = 100.0 * (got - true) / true
        if l in phantom.MUSCLES:
            dice.append(d)
            err.append(e)
        else:
            print("-" * 63)
        print(f"{name:<22}{true:>10.1f}{got:>13.1f}{e:>+10.2f}{d:>8.3f}")
    print("-" * 63)
    mae = "|" + format(np.mean(np.abs(err)), ".2f") + "|"
    print(f"{'mean of the muscles':<22}{'':>23}{mae:>10}{np.mean(dice):>8.3f}")
    print(f"\nmean Dice over the {len(dice)} muscles {np.mean(dice):.3f} (test asks > {MIN_MEAN_DICE}), largest "
          f"volume error {np.max(np.abs(err)):.2f} % (test asks < {MAX_VOLUME_ERROR_PERCENT:g} %).")
    print(f"true = volume of the phantom's continuous shapes; measured = `sarco segment` report "
          f"(voxels x voxel volume); files in {_rel(a.out)}/.")
    print("A demonstration on synthetic data (weights/README.md), not a clinical result.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
