#!/usr/bin/env python3
"""`make demo-us`: the ultrasound measures on a held-out synthetic rectus femoris image, true versus
measured CSA and MT. MEASUREMENT ONLY: the label map measured is the phantom's own exact mask, not a
segmentation (an nnU-Net ultrasound model comes with its own issue); what this shows is that
`sarco measure` turns a mask into CSA and MT within the stated discretisation bounds, and that the
pixel spacing travels from the PNG (pHYs) into the measures.

    PYTHONPATH=python SARCO_LIBRARY=lib/libsarco.so python3 tools/demo_us.py [--seed N] [--cli build/sarco]

Steps: generate the phantom (python/sarco/us_phantom.py, seed 1000 unless --seed), write us.png and
labels.png (8-bit grey, pHYs) and truth.json, run `sarco measure --labels labels.png --image us.png`
exactly as a user would, and compare its JSON with the continuous outline's exact area and thickness.
Needs numpy and the built CLI only; exits 1 if a measure falls outside its bound.
"""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
from sarco import us_phantom  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=us_phantom.HELD_OUT)
    ap.add_argument("--cli", default=os.path.join(ROOT, "build", "sarco"))
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "demo-us"))
    args = ap.parse_args(argv)
    p = us_phantom.generate(args.seed)
    us, lab, _ = us_phantom.write(p, args.out)
    cmd = [args.cli, "measure", "--labels", lab, "--image", us, "--report", os.path.join(args.out, "measure.json")]
    print("$ " + " ".join(os.path.relpath(c) if os.path.exists(c) else c for c in cmd))
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stderr, file=sys.stderr)
        return 1
    rep = json.load(open(os.path.join(args.out, "measure.json")))
    u = rep["labels"][0]["ultrasound"]
    t, b = p.truth, p.truth["bounds"]
    print(f"phantom seed {p.seed}: {p.image.shape[0]} x {p.image.shape[1]} pixels, "
          f"{rep['pixel_spacing_mm'][0]:.5f} x {rep['pixel_spacing_mm'][1]:.5f} mm (from {rep['pixel_spacing_from']})")
    print("measurement only: the phantom's own mask, not a segmentation\n")
    rows = [("CSA (mm^2)", t["csa_mm2"], u["csa_mm2"], b["csa_mm2"]),
            ("MT (mm)", t["mt_mm"], u["mt_mm"], b["mt_mm"]),
            ("max extent (mm)", t["mt_max_mm"], u["mt_max_mm"], b["mt_max_mm"]),
            ("width (mm)", t["width_mm"], u["bbox"]["width_mm"], 2 * p.spacing[1])]
    print(f"{'rectus femoris':<18}{'true':>10}{'measured':>11}{'error %':>10}{'bound':>9}")
    ok = True
    for name, tv, mv, bd in rows:
        inside = abs(mv - tv) <= bd
        ok &= inside
        print(f"{name:<18}{tv:>10.3f}{mv:>11.3f}{100 * (mv / tv - 1):>+10.3f}{bd:>9.3f}{'' if inside else '  OUTSIDE'}")
    print(f"{'echo mean / SD':<18}{'':>10}{u['echo_mean']:>11.1f} / {u['echo_sd']:.1f} (grey levels, 0-255)")
    print(f"{'inscribed diam.':<18}{'':>10}{u['inscribed_diameter_mm']:>11.3f}   components {u['components']}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
