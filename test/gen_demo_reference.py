#!/usr/bin/env python3
"""MONAI's labels for the demo's held-out phantom, for test/python/test_demo.py (reference
environment: torch + MONAI + nibabel):

    /opt/refenv/bin/python test/gen_demo_reference.py

Builds monai.networks.nets.UNETR from the kwargs stored in weights/demo_thigh_unetr.safetensors,
loads its tensors, writes the held-out phantom (python/sarco/phantom.py HELD_OUT) as the same int16
NIfTI the test writes, reads it back with nibabel as a MONAI user would, and runs MONAI's transforms,
sliding_window_inference (float32, the model's roi/overlap/mode), argmax and the inverse Spacing
(tools/train_demo.py monai_segment). Writes test/data/demo/monai_seed<seed>.npz: the label map
(uint8, compressed), fingerprints of the phantom and the model file (so the test notices a
changed generator or retrained weights) and MONAI's own Dice and volume errors.
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
from sarco import phantom, safetensors  # noqa: E402

MODEL = os.path.join(ROOT, "weights", "demo_thigh_unetr.safetensors")
OUT = os.path.join(ROOT, "test", "data", "demo")


def _sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def load_model(path=MODEL):
    tensors, meta = safetensors.read(path)
    cfg = json.loads(meta["sarco.config"])
    model = train_demo.build_model(cfg["kwargs"])
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()}, strict=True)
    assert not missing and not unexpected, (missing, unexpected)
    return model.eval(), cfg


def main():
    torch.set_num_threads(2)
    model, cfg = load_model()
    h = phantom.HELD_OUT
    p = phantom.generate(h["seed"], h["shape"], h["spacing"])
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "ct.nii.gz")
        phantom.write_nifti(path, p.image, p.affine, dtype=np.int16)
        im = nib.load(path)
        ct = np.asarray(im.dataobj).astype(np.float32)
        affine = np.asarray(im.affine, dtype=np.float64)
    assert np.array_equal(ct, p.image)
    lab = train_demo.monai_segment(model, ct, affine, cfg)
    sc = train_demo.scores(lab, p)
    for name, v in sc.items():
        print(f"{name:<20} dice {v['dice']:.4f}  volume {v['volume_ml']:8.2f} mL  true {v['true_ml']:8.2f} mL  "
              f"error {v['error_percent']:+.2f} %")
    os.makedirs(OUT, exist_ok=True)
    out = os.path.join(OUT, f"monai_seed{p.seed}.npz")
    np.savez_compressed(
        out, labels=lab.astype(np.uint8), seed=p.seed, shape=np.array(h["shape"]), spacing=np.array(h["spacing"]),
        image_sum=np.int64(p.image.astype(np.int64).sum()),
        model_sha256=np.str_(_sha256(MODEL)),
        label_counts=np.bincount(p.labels.reshape(-1), minlength=len(phantom.CLASSES)).astype(np.int64),
        dice=np.array([sc[phantom.CLASSES[l]]["dice"] for l in phantom.MUSCLES]),
        volume_error_percent=np.array([sc[phantom.CLASSES[l]]["error_percent"] for l in phantom.MUSCLES]))
    print(f"wrote {out} ({os.path.getsize(out)} bytes)")


if __name__ == "__main__":
    main()
