#!/opt/refenv/bin/python
"""EDT and HD95 on a 512x512x300 pair of masks: libsarco's CPU path (bench/bench_edt) against scipy's
distance_transform_edt-based computation and MONAI's compute_hausdorff_distance, in one run, on the
same cores. Reports best-of-N wall times, the ratios and the agreement of the results.

    make BUILD=build bench          # builds build/bench/bench_edt
    /opt/refenv/bin/python bench/bench_edt_ref.py [--bin build/bench/bench_edt] [--threads 2]
        [--repeat 3] [--ref-repeat 2] [--shape 300 512 512] [--json out.json]

The masks: an elliptical annulus (a thigh-like muscle ring) through every slice, radii varying along
z with angular bumps; the prediction is the same shape with shifted centres, scaled radii and other
bump phases. Both fill most of the field of view, so the union's bounding box (which libsarco and
MONAI crop to) is most of the volume; scipy is also timed on that same crop for a like-for-like ratio.
Needs numpy, scipy, torch, monai: run with /opt/refenv/bin/python.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def make_masks(shape, seed=7):
    d, h, w = shape
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ang = np.arctan2(yy - h / 2, xx - w / 2)

    def ring(k, cx, cy, ro_x, ro_y, ri_x, ri_y, ph):
        t = k / max(d - 1, 1)
        s = 1.0 + 0.06 * np.sin(2 * np.pi * t + ph[0])
        bump = 1.0 + 0.05 * np.sin(3 * ang + ph[1] + 4 * t) + 0.03 * np.sin(7 * ang + ph[2])
        ro = ((xx - cx) / (ro_x * s)) ** 2 + ((yy - cy) / (ro_y * s)) ** 2
        ri = ((xx - cx - 10) / (ri_x * s)) ** 2 + ((yy - cy + 5) / (ri_y * s)) ** 2
        return (ro <= bump ** 2) & (ri > 1.0)

    ph_g = rng.uniform(0, 2 * np.pi, 3)
    ph_p = ph_g + rng.normal(0, 0.15, 3)
    g = np.zeros(shape, np.uint8)
    p = np.zeros(shape, np.uint8)
    for k in range(d):
        g[k] = ring(k, w / 2, h / 2, 0.44 * w, 0.41 * h, 0.17 * w, 0.15 * h, ph_g)
        p[k] = ring(k, w / 2 + 1.5, h / 2 - 1.0, 0.445 * w, 0.405 * h, 0.175 * w, 0.148 * h, ph_p)
    return p, g


def best_of(n, fn):
    best, out = float("inf"), None
    for _ in range(n):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def scipy_metrics(p, g, sp):
    import scipy.ndimage as ndi
    st = ndi.generate_binary_structure(p.ndim, 1)
    ep = p & ~ndi.binary_erosion(p, st)
    eg = g & ~ndi.binary_erosion(g, st)
    d_pg = ndi.distance_transform_edt(~eg, sampling=sp)[ep]
    d_gp = ndi.distance_transform_edt(~ep, sampling=sp)[eg]
    return {"hd_mm": float(max(d_pg.max(), d_gp.max())),
            "hd95_mm": float(max(np.percentile(d_pg, 95), np.percentile(d_gp, 95))),
            "assd_mm": float(np.concatenate([d_pg, d_gp]).mean())}


def union_crop(p, g):
    """The union's bounding box with a one-voxel margin (as MONAI crops)."""
    u = p | g
    sl = []
    for a in range(p.ndim):
        other = tuple(b for b in range(p.ndim) if b != a)
        nz = np.nonzero(np.any(u, axis=other))[0]
        sl.append(slice(max(nz[0] - 1, 0), min(nz[-1] + 2, p.shape[a])))
    return tuple(sl)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "bench", "bench_edt"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--ref-repeat", type=int, default=2)
    ap.add_argument("--shape", type=int, nargs=3, default=[300, 512, 512], help="D H W (C order)")
    ap.add_argument("--spacing", type=float, nargs=3, default=[1.5, 0.78, 0.78])
    ap.add_argument("--skip-monai", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()
    shape, sp = tuple(args.shape), tuple(args.spacing)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)

    t0 = time.perf_counter()
    p, g = make_masks(shape)
    pb, gb = p.astype(bool), g.astype(bool)
    crop = union_crop(pb, gb)
    frac = np.prod([s.stop - s.start for s in crop]) / np.prod(shape)
    print(f"masks {shape} spacing {sp}: pred {pb.sum()} ref {gb.sum()} voxels, union box {frac:.0%} of the volume "
          f"({time.perf_counter() - t0:.1f} s to build)", file=sys.stderr)
    res = {"shape": shape, "spacing": sp, "threads": args.threads, "union_box_fraction": float(frac)}

    with tempfile.TemporaryDirectory() as tmp:
        pf, gf = os.path.join(tmp, "p.raw"), os.path.join(tmp, "g.raw")
        p.tofile(pf)
        g.tofile(gf)
        del p, g
        for nt in sorted({args.threads, 1}):
            cmd = [args.bin, "--pred", pf, "--ref", gf, "--dims", *map(str, shape), "--spacing", *map(str, sp),
                   "--threads", str(nt), "--repeat", str(args.repeat)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            res[f"sarco_{nt}t"] = json.loads(out)
            print(f"sarco ({nt} thread{'s' if nt > 1 else ''}): {out.strip()}", file=sys.stderr)

    import scipy
    import scipy.ndimage as ndi
    res["scipy_version"] = scipy.__version__
    t, dt = best_of(args.ref_repeat, lambda: ndi.distance_transform_edt(gb, sampling=sp))
    res["scipy_edt_s"] = t
    res["scipy_edt_max_mm"] = float(dt.max())
    del dt
    print(f"scipy distance_transform_edt: {t:.2f} s", file=sys.stderr)
    t, m = best_of(args.ref_repeat, lambda: scipy_metrics(pb, gb, sp))
    res["scipy_hd95_full_s"], res["scipy_metrics"] = t, m
    print(f"scipy HD95 (full volume): {t:.2f} s {m}", file=sys.stderr)
    t, m = best_of(args.ref_repeat, lambda: scipy_metrics(pb[crop], gb[crop], sp))
    res["scipy_hd95_crop_s"] = t
    print(f"scipy HD95 (union box): {t:.2f} s {m}", file=sys.stderr)

    if not args.skip_monai:
        import torch
        import monai
        from monai.metrics import compute_hausdorff_distance
        torch.set_num_threads(args.threads)
        res["monai_version"] = monai.__version__
        yp = torch.from_numpy(pb[None, None].astype(np.float32))
        yg = torch.from_numpy(gb[None, None].astype(np.float32))
        t, v = best_of(args.ref_repeat, lambda: compute_hausdorff_distance(
            yp, yg, include_background=True, percentile=95, spacing=list(sp)))
        res["monai_hd95_s"], res["monai_hd95_mm"] = t, float(v.reshape(-1)[0])
        print(f"MONAI compute_hausdorff_distance(percentile=95): {t:.2f} s, {res['monai_hd95_mm']:.6f} mm",
              file=sys.stderr)

    ours = res[f"sarco_{args.threads}t"]
    one = res["sarco_1t"]
    summary = {
        "edt_ratio_scipy_over_sarco": res["scipy_edt_s"] / ours["edt_s"],
        "edt_ratio_scipy_over_sarco_1thread": res["scipy_edt_s"] / one["edt_s"],
        "hd95_ratio_scipy_full_over_sarco": res["scipy_hd95_full_s"] / ours["evaluate_s"],
        "hd95_ratio_scipy_crop_over_sarco": res["scipy_hd95_crop_s"] / ours["evaluate_s"],
        "hd95_ratio_scipy_crop_over_sarco_1thread": res["scipy_hd95_crop_s"] / one["evaluate_s"],
        "edt_max_rel_diff": abs(ours["edt_max_mm"] - res["scipy_edt_max_mm"]) / res["scipy_edt_max_mm"],
        "hd95_rel_diff_scipy": abs(ours["hd95_mm"] - res["scipy_metrics"]["hd95_mm"]) / res["scipy_metrics"]["hd95_mm"],
        "assd_rel_diff_scipy": abs(ours["assd_mm"] - res["scipy_metrics"]["assd_mm"]) / res["scipy_metrics"]["assd_mm"],
    }
    if "monai_hd95_s" in res:
        summary["hd95_ratio_monai_over_sarco"] = res["monai_hd95_s"] / ours["evaluate_s"]
        summary["hd95_rel_diff_monai"] = abs(ours["hd95_mm"] - res["monai_hd95_mm"]) / res["monai_hd95_mm"]
    res["summary"] = summary
    print(json.dumps(res, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
