#!/usr/bin/env python3
"""MONAI's labels for the L3 demo's held-out slice, for test/python/test_demo_l3.py (reference
environment: torch + MONAI + nibabel):

    /opt/refenv/bin/python test/gen_demo_l3_reference.py

Builds monai.networks.nets.UNETR (spatial_dims 2) from the kwargs stored in
weights/demo_l3_unetr.safetensors, loads its tensors, writes the held-out L3 phantom (seed 1000, 5
slices, as tools/demo_l3.py does), reads the CT back with nibabel, takes L3's centre slice and runs
MONAI's transforms, sliding_window_inference, argmax and the inverse Spacing
(tools/train_demo.py monai_segment with the L3 config). Writes test/data/demo/monai_l3_seed1000.npz:
the slice's label map (uint8, compressed), fingerprints of the phantom and the model file, and
MONAI's own Dice and area errors.
"""
import hashlib
import json
import os
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import nibabel as nib  # noqa: E402
import torch  # noqa: E402

import train_demo  # noqa: E402
import train_l3_demo  # noqa: E402
from sarco import l3_phantom, safetensors  # noqa: E402

MODEL = os.path.join(ROOT, "weights", "demo_l3_unetr.safetensors")
OUT = os.path.join(ROOT, "test", "data", "demo")
SEED = 1000


def _sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    torch.set_num_threads(1)
    tensors, meta = safetensors.read(MODEL)
    cfg = json.loads(meta["sarco.config"])
    model = train_demo.build_model(cfg["kwargs"])
    model.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()}, strict=True)
    model.eval()
    p = l3_phantom.generate(seed=SEED, nz=5)
    z = p.l3_slice
    with tempfile.TemporaryDirectory() as d:
        l3_phantom.write(p, d)
        im = nib.load(os.path.join(d, "ct.nii.gz"))
        ct = np.asarray(im.dataobj).astype(np.float32)[:, :, z]
        affine = np.asarray(im.affine, dtype=np.float64)
    assert np.array_equal(ct, p.image[:, :, z])
    lab = train_demo.monai_segment(model, ct, affine, cfg)
    px = p.spacing[0] * p.spacing[1] / 100.0
    sc = train_l3_demo.scores(lab, p.labels[:, :, z], p.truth[z], px)
    for name, v in sc.items():
        print(f"{name:<18} dice {v['dice']:.4f}  area {v['area_cm2']:8.2f} cm2  true {v['true_cm2']:8.2f}  "
              f"error {v['error_percent']:+.2f} %")
    os.makedirs(OUT, exist_ok=True)
    out = os.path.join(OUT, f"monai_l3_seed{SEED}.npz")
    np.savez_compressed(out, labels=lab.astype(np.uint8), seed=SEED, slice=z,
                        image_sum=np.int64(p.image.astype(np.int64).sum()), model_sha256=np.str_(_sha256(MODEL)),
                        dice=np.array([v["dice"] for v in sc.values()]),
                        area_error_percent=np.array([v["error_percent"] for v in sc.values()]))
    print(f"wrote {out} ({os.path.getsize(out)} bytes)")


if __name__ == "__main__":
    main()
