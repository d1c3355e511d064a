"""A small cohort for the batch, distributed and README tests (not a test module): thigh phantoms
on a coarse grid (48 x 48 x 8 voxels of 3.2 x 3.2 x 5 mm: one UNETR window each with the demo
model), a truncated file and a 2D image (wrong dimensionality), and a case list. numpy only."""
import os

import numpy as np

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
MODEL = os.path.join(ROOT, "weights", "demo_thigh_unetr.safetensors")
SHAPE, SPACING = (48, 48, 8), (3.2, 3.2, 5.0)


def write_phantom(path, seed, shape=SHAPE, spacing=SPACING, labels_path=None):
    from sarco import phantom
    p = phantom.generate(seed, shape, spacing)
    phantom.write_nifti(path, p.image, p.affine, dtype=np.int16)
    if labels_path:
        phantom.write_nifti(labels_path, p.labels, p.affine, intent_label=True)
    return p


def make_cohort(d, seeds=(11, 12, 13), bad=True, heights=True):
    """Writes the cohort into d; returns (list.csv path, [case ids], {case id: expected status or None})."""
    os.makedirs(os.path.join(d, "scans"), exist_ok=True)
    rows, expect = ["case_id,path,height_m,site"], {}
    for i, s in enumerate(seeds):
        cid = f"p{s}"
        write_phantom(os.path.join(d, "scans", f"{cid}.nii.gz"), s)
        rows.append(f"{cid},scans/{cid}.nii.gz,{1.6 + 0.05 * i if heights and i % 2 == 0 else ''},A")
        expect[cid] = None
        if bad and i == 0:
            with open(os.path.join(d, "scans", f"{cid}.nii.gz"), "rb") as f:
                head = f.read(400)
            with open(os.path.join(d, "scans", "corrupt.nii.gz"), "wb") as f:
                f.write(head)  # a truncated gzip stream
            rows.append("corrupt,scans/corrupt.nii.gz,,B")
            expect["corrupt"] = "bad format"
            import sarco
            sarco.save_labels(os.path.join(d, "scans", "flat.nii.gz"),
                              sarco.Image(np.zeros((40, 40), np.uint16), spacing=(1.0, 1.0)), max_label=1)
            rows.append("flat,scans/flat.nii.gz,,B")
            expect["flat"] = "error"  # a 2D image into a 3D model: refused, whatever the status
    lst = os.path.join(d, "list.csv")
    with open(lst, "w") as f:
        f.write("\n".join(rows) + "\n")
    return lst, [r.split(",")[0] for r in rows[1:]], expect
