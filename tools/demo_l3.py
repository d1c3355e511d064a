#!/usr/bin/env python3
"""`make demo-l3`: a held-out synthetic L3 CT through `sarco l3` with the demo 2-D model, areas
measured versus true (the phantom's exact, analytic areas), Dice per class, and the SMI judged with
Martin 2013.

    PYTHONPATH=python SARCO_LIBRARY=lib/libsarco.so python3 tools/demo_l3.py [--seed N] [--cli build/sarco]

Steps: generate the phantom (python/sarco/l3_phantom.py, seed 1000: never a training seed; 5 slices
of 384 x 320 pixels of 1 mm, 3 mm apart, L3's centre at slice 2), write it as NIfTI with its vertebra
map, run the command-line tool exactly as a user would (the slice comes from the vertebra map),
read its JSON report and the slice's label map back, compare with the phantom's truth. The same run
with the phantom's own label map (--labels) shows what the measurement alone gives. Needs numpy and
the built library only. A demonstration on synthetic data, not a clinical model.
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
from sarco import l3_phantom  # noqa: E402

MODEL = os.path.join(ROOT, "weights", "demo_l3_unetr.safetensors")
SUBJECT = ["--height-m", "1.62", "--sex", "F", "--weight-kg", "58", "--table", "martin2013"]


def run(cli, args):
    p = subprocess.run([cli, "l3"] + args, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"sarco l3 failed ({p.returncode}): {p.stderr}")
    return json.loads(p.stdout)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--cli", default=os.path.join(ROOT, "build", "sarco"))
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "demo_l3"))
    a = ap.parse_args(argv)
    if a.seed < 1000:
        sys.exit("seeds below 1000 trained the demo model: pick a held-out one")
    p = l3_phantom.generate(seed=a.seed, nz=5)
    l3_phantom.write(p, a.out)
    ct, vert = os.path.join(a.out, "ct.nii.gz"), os.path.join(a.out, "vertebrae.nii.gz")
    seg = os.path.join(a.out, "slice_labels.nii.gz")
    common = ["--input", ct, "--vertebrae", vert, "--l3-label", "3"] + SUBJECT
    subprocess.run([a.cli, "l3"] + common + ["--model", a.model, "--output", seg, "--report",
                                             os.path.join(a.out, "l3_model.json")], check=True)
    with open(os.path.join(a.out, "l3_model.json")) as f:
        m = json.load(f)
    r = run(a.cli, common + ["--labels", os.path.join(a.out, "labels.nii.gz")])
    z = m["slice"]["index"]
    t = p.truth[z]
    truth_lab = p.labels[:, :, z]
    from sarco.pipeline import load_image  # the library's reader: the CLI's label map back
    pred = np.asarray(load_image(seg).data)
    print(f"L3 phantom seed {a.seed}: slice {z} (from the vertebra map), {p.spacing[0]:g} mm pixels; model "
          f"{os.path.relpath(a.model, ROOT)}")
    print(f"{'':28}{'true':>9}{'model':>9}{'err %':>8}{'Dice':>7}{'labels':>9}{'err %':>8}")
    rows = [("muscle compartment cm2", t["muscle_compartment_cm2"], "muscle_compartment_cm2", 1),
            ("SMA -29..150 HU cm2", t["muscle_tissue_cm2"], "sma_cm2", None),
            ("subcutaneous fat cm2", t["sat_cm2"], "sat_cm2", 2),
            ("visceral fat cm2", t["vat_cm2"], "vat_cm2", 3)]
    for name, true, key, lab in rows:
        mv, rv = m["measures"][key], r["measures"][key]
        dice = ""
        if lab is not None:
            x, y = pred == lab, truth_lab == lab
            dice = f"{2 * (x & y).sum() / (x.sum() + y.sum()):.3f}"
        print(f"{name:28}{true:9.1f}{mv:9.1f}{100 * (mv - true) / true:+8.2f}{dice:>7}{rv:9.1f}"
              f"{100 * (rv - true) / true:+8.2f}")
    h = 1.62
    print(f"{'SMI cm2/m2':28}{t['muscle_tissue_cm2'] / h ** 2:9.1f}{m['measures']['smi_cm2_m2']:9.1f}"
          f"{'':15}{r['measures']['smi_cm2_m2']:9.1f}")
    print(f"{'muscle attenuation HU':28}{'':9}{m['measures']['muscle_attenuation_hu']:9.1f}{'':15}"
          f"{r['measures']['muscle_attenuation_hu']:9.1f}   (phantom muscle {t['hu']['muscle']:.1f} HU)")
    j = m["judgement"]
    print(f"Martin 2013 (F, BMI {j['bmi']:.1f}): {j['verdict']}, myosteatosis {j['myosteatosis']}")
    print("A demonstration model trained on synthetic slices: never for patients (weights/README.md).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
