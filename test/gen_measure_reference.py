#!/opt/refenv/bin/python
"""Reference results for the measurement tests (test/test_measure.c, test/python/test_measure.py).

Builds seeded random blobs (2D and 3D, anisotropic spacing, three labels, one touching the image
border) and computes, per label:
  - "exact": REFERENCE.md's definitions in float64 with scipy: surface = mask XOR binary_erosion
    (cross element, outside = background), distances = distance_transform_edt(~surface, sampling)
    sampled at the other mask's surface, HD95 = max of the two directed np.percentile(.., 95)
    (linear), ASSD = mean of both directions pooled;
  - "monai": MONAI's compute_dice, compute_hausdorff_distance (percentile None and 95) and
    compute_average_surface_distance(symmetric=True), with spacing (float32 throughout);
and scipy's distance_transform_edt(pred == 1, sampling) as the EDT reference.

Writes test/data/measure/: <case>_pred.npy, <case>_ref.npy (uint8), <case>_edt.npy (float32) and
reference.json. Needs numpy, scipy, torch and monai: run with /opt/refenv/bin/python.
"""
import json
import os
import sys

import numpy as np
import scipy
import scipy.ndimage as ndi
import torch
import monai
from monai.metrics import compute_average_surface_distance, compute_dice, compute_hausdorff_distance

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "measure")
NLAB = 3


def blobs(shape, rng, nblobs, jitter=None):
    """A label image: each label is a union of random ellipsoids; label 3 is pushed against the border.
    With jitter (centres, radii) the same blobs are drawn slightly moved: a 'prediction'."""
    grid = np.indices(shape, dtype=np.float64)
    lab = np.zeros(shape, dtype=np.uint8)
    for l in range(1, NLAB + 1):
        for b in range(nblobs):
            c = np.array([rng.uniform(0.25, 0.75) * s for s in shape])
            r = np.array([rng.uniform(0.08, 0.22) * s for s in shape])
            if l == NLAB and b == 0:
                c[-1] = 0.5  # touches the border along the last axis
            if jitter is not None:
                c = c + jitter.normal(0, 1.2, size=c.shape)
                r = r * jitter.uniform(0.85, 1.15, size=r.shape)
            d = sum(((grid[a] - c[a]) / r[a]) ** 2 for a in range(len(shape)))
            lab[(d <= 1.0) & (lab == 0)] = l
    return lab


def surface(m):
    return m & ~ndi.binary_erosion(m, structure=ndi.generate_binary_structure(m.ndim, 1), border_value=0)


def exact_metrics(p, g, spacing):
    sp, sg = surface(p), surface(g)
    d_pg = ndi.distance_transform_edt(~sg, sampling=spacing)[sp]
    d_gp = ndi.distance_transform_edt(~sp, sampling=spacing)[sg]
    inter = np.logical_and(p, g).sum()
    return {
        "voxels_pred": int(p.sum()), "voxels_ref": int(g.sum()), "voxels_both": int(inter),
        "surface_pred": int(sp.sum()), "surface_ref": int(sg.sum()),
        "dice": 2.0 * inter / (p.sum() + g.sum()),
        "jaccard": inter / np.logical_or(p, g).sum(),
        "hd_mm": float(max(d_pg.max(), d_gp.max())),
        "hd95_mm": float(max(np.percentile(d_pg, 95), np.percentile(d_gp, 95))),
        "assd_mm": float(np.concatenate([d_pg, d_gp]).mean()),
        # the other common ASSD: the mean of the two directed means (not what REFERENCE.md uses)
        "mean_of_means_mm": float(0.5 * (d_pg.mean() + d_gp.mean())),
    }


def monai_metrics(pred, ref, spacing):
    def onehot(x):
        return torch.from_numpy(np.stack([(x == l) for l in range(NLAB + 1)])[None].astype(np.float32))

    yp, yg = onehot(pred), onehot(ref)
    sp = [float(s) for s in spacing]
    dice = compute_dice(yp, yg, include_background=False)[0]
    hd = compute_hausdorff_distance(yp, yg, include_background=False, spacing=sp)[0]
    hd95 = compute_hausdorff_distance(yp, yg, include_background=False, percentile=95, spacing=sp)[0]
    assd = compute_average_surface_distance(yp, yg, include_background=False, symmetric=True, spacing=sp)[0]
    return {l: {"dice": float(dice[l - 1]), "hd_mm": float(hd[l - 1]), "hd95_mm": float(hd95[l - 1]),
                "assd_mm": float(assd[l - 1])} for l in range(1, NLAB + 1)}


CASES = [
    ("blobs2d", (72, 88), (0.7, 1.3), 3),
    ("blobs3d", (24, 32, 28), (2.5, 0.8, 1.1), 2),
    ("thin3d", (10, 40, 36), (5.0, 0.6, 0.75), 2),
]


def main():
    os.makedirs(OUT, exist_ok=True)
    ref_json = {"generator": "test/gen_measure_reference.py", "numpy": np.__version__, "scipy": scipy.__version__,
                "torch": torch.__version__, "monai": monai.__version__, "cases": []}
    for k, (name, shape, spacing, nblobs) in enumerate(CASES):
        ref = blobs(shape, np.random.default_rng(100 + k), nblobs)
        pred = blobs(shape, np.random.default_rng(100 + k), nblobs, jitter=np.random.default_rng(200 + k))
        edt = ndi.distance_transform_edt(pred == 1, sampling=spacing).astype(np.float32)
        np.save(os.path.join(OUT, f"{name}_pred.npy"), pred)
        np.save(os.path.join(OUT, f"{name}_ref.npy"), ref)
        np.save(os.path.join(OUT, f"{name}_edt.npy"), edt)
        mon = monai_metrics(pred, ref, spacing)
        labels = []
        for l in range(1, NLAB + 1):
            p, g = pred == l, ref == l
            assert p.any() and g.any(), (name, l)
            labels.append({"label": l, "exact": exact_metrics(p, g, spacing), "monai": mon[l]})
        ref_json["cases"].append({"name": name, "shape": list(shape), "spacing": list(spacing),
                                  "pred": f"{name}_pred.npy", "ref": f"{name}_ref.npy",
                                  "edt": f"{name}_edt.npy", "edt_of": "pred == 1", "labels": labels})
        for e in labels:
            x, m = e["exact"], e["monai"]
            print(f"{name} label {e['label']}: dice {x['dice']:.5f}/{m['dice']:.5f} hd {x['hd_mm']:.4f}/{m['hd_mm']:.4f}"
                  f" hd95 {x['hd95_mm']:.4f}/{m['hd95_mm']:.4f} assd {x['assd_mm']:.5f}/{m['assd_mm']:.5f}",
                  file=sys.stderr)
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(ref_json, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
