#!/opt/refenv/bin/python
"""Reference outputs of MONAI's sliding_window_inference and preprocessing for test/test_pipeline.c.

Run from the repository root with the reference environment (torch + monai):
    /opt/refenv/bin/python test/gen_pipeline_reference.py
Writes test/data/pipeline/:
  sw_<case>.npy        sliding_window_inference output (float32) for the conv predictor below on the
                       hashed input below; the case table is repeated in test/test_pipeline.c
  ct.npy               a synthetic CT (int16, MONAI axis order (x, y, z)), its affine in ct_affine.npy
  pp_scaled.npy        ScaleIntensityRange(-57, 164, 0, 1, clip) + AdjustContrast(2) of ct
  pp_box.npy           CropForeground box [start..., end...] (int64)
  pp_crop_affine.npy   the cropped image's affine
  pp_spacing.npy       Spacing(pixdim=(1.5, 1.5, 2.0), bilinear) of the cropped image, pp_spacing_affine.npy
  pp_lab_model.npy     a label volume on the Spacing grid (uint16) and pp_lab_back.npy, its MONAI inverse
                       (SpatialResample nearest back to the cropped grid, padded to ct's grid with 0)
  seg_<case>.npy       the whole path: the steps above (with Orientation(axcodes) for the "ras" cases),
                       sliding_window_inference(conv predictor, roi 16, gaussian, overlap 0.25), argmax,
                       inverse Spacing (nearest), uncrop, inverse Orientation: labels on ct's grid (uint16)
  unetr_<case>.npy     sliding_window_inference of test/data/unetr/a_conv_instance_res.safetensors (UNETR,
                       float64) on the hashed input, roi = img_size 32
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.inferers import sliding_window_inference
from monai.networks.nets import UNETR
from monai.transforms import (AdjustContrast, CropForeground, Orientation, ScaleIntensityRange, Spacing,
                              SpatialResample)

OUT = "test/data/pipeline"

# name, spatial size, roi, overlap, mode, sigma_scale, sw_batch_size
SW_CASES = [
    ("a_const25", (29, 22, 19), (16, 16, 16), 0.25, "constant", 0.125, 1),
    ("b_gauss25", (29, 22, 19), (16, 16, 16), 0.25, "gaussian", 0.125, 1),
    ("c_const50", (29, 22, 19), (16, 16, 16), 0.5, "constant", 0.125, 2),
    ("d_gauss50", (29, 22, 19), (16, 16, 16), 0.5, "gaussian", 0.125, 3),
    ("e_small_const", (11, 20, 7), (16, 16, 16), 0.25, "constant", 0.125, 1),
    ("f_small_gauss", (11, 20, 7), (16, 16, 16), 0.5, "gaussian", 0.125, 1),
    ("g_aniso", (29, 22, 19), (12, 16, 8), 0.5, "gaussian", 0.25, 4),
    ("h_2d", (45, 31), (16, 16), 0.25, "gaussian", 0.125, 1),
]


def hashed_input(shape):
    """x[i] = ((i * 2654435761) mod 2^32) / 2^32 over the flat C-order index: exact in C too."""
    n = int(np.prod(shape))
    i = np.arange(n, dtype=np.uint64)
    v = (i * np.uint64(2654435761)) % np.uint64(1 << 32)
    return (v.astype(np.float64) / 4294967296.0).astype(np.float32).reshape(shape)


def conv_weights(nsp, cout=3):
    """w[o][0][taps] = 0.5 sin(1 + 0.37 (o * 3^nsp + flat tap index)), bias 0.1, -0.2, 0.3 (float64)."""
    taps = 3 ** nsp
    w = np.array([[0.5 * math.sin(1.0 + 0.37 * (o * taps + t)) for t in range(taps)] for o in range(cout)])
    w = w.reshape((cout, 1) + (3,) * nsp)
    b = np.array([0.1, -0.2, 0.3][:cout])
    return torch.from_numpy(w), torch.from_numpy(b)


def conv_predictor(nsp):
    w, b = conv_weights(nsp)
    conv = F.conv3d if nsp == 3 else F.conv2d

    def predict(x):  # float32 in, float64 conv, float32 out
        return conv(x.double(), w, b, padding=1).float()

    return predict


def save(name, a):
    np.save(os.path.join(OUT, name + ".npy"), np.ascontiguousarray(a))


def sliding_window_cases():
    for name, size, roi, overlap, mode, sigma, bs in SW_CASES:
        x = torch.from_numpy(hashed_input((1, 1) + size))
        with torch.no_grad():
            y = sliding_window_inference(x, roi, bs, conv_predictor(len(size)), overlap=overlap, mode=mode,
                                         sigma_scale=sigma)
        save("sw_" + name, y.numpy()[0].astype("<f4"))
        print(f"sw {name}: {tuple(y.shape)}", file=sys.stderr)


def synthetic_ct():
    """(x, y, z) = (40, 36, 18): air, a body ellipse of muscle-like HU with a fat rim and a bone."""
    nx, ny, nz = 40, 36, 18
    g = np.random.default_rng(7)
    x, y, z = np.meshgrid(np.arange(nx), np.arange(ny), np.arange(nz), indexing="ij")
    ct = np.full((nx, ny, nz), -1000.0)
    body = ((x - 21.0) / 13.5) ** 2 + ((y - 17.0) / 11.0) ** 2 <= 1.0
    body &= (z >= 2) & (z <= 15)
    ct[body] = -100.0  # fat
    inner = ((x - 21.0) / 11.0) ** 2 + ((y - 17.0) / 8.5) ** 2 <= 1.0
    ct[body & inner] = 45.0  # muscle
    bone = ((x - 19.0) / 3.0) ** 2 + ((y - 18.0) / 3.0) ** 2 <= 1.0
    ct[body & bone] = 700.0
    ct += np.where(body, g.normal(0, 25, ct.shape), g.normal(0, 5, ct.shape))
    return np.round(ct).astype(np.int16)


def rot_z(deg):
    t = math.radians(deg)
    return np.array([[math.cos(t), -math.sin(t), 0], [math.sin(t), math.cos(t), 0], [0, 0, 1.0]])


SPACING = (0.83, 1.07, 2.53)
AFFINES = {
    # x flipped, rotated 12 degrees about z
    "flip": (rot_z(12.0) @ np.diag([-SPACING[0], SPACING[1], SPACING[2]]), (31.0, -22.5, -100.0)),
    # voxel axis 0 along world A, axis 1 along world L, rotated 7 degrees
    "perm": (rot_z(7.0) @ np.array([[0, -SPACING[1], 0], [SPACING[0], 0, 0], [0, 0, SPACING[2]]]),
             (10.0, -40.0, 55.0)),
}


def make_affine(kind):
    m, t = AFFINES[kind]
    a = np.eye(4)
    a[:3, :3] = m
    a[:3, 3] = t
    return a


def preprocess(ct, aff, axcodes=None):
    img = MetaTensor(torch.from_numpy(ct.astype(np.float32))[None], affine=torch.from_numpy(aff))
    index_map = None
    if axcodes:
        idx = MetaTensor(torch.arange(ct.size, dtype=torch.float64).reshape(ct.shape)[None],
                         affine=torch.from_numpy(aff))
        index_map = Orientation(axcodes=axcodes)(idx)[0].numpy().astype(np.int64)
        img = Orientation(axcodes=axcodes)(img)
    s = ScaleIntensityRange(-57, 164, 0.0, 1.0, clip=True)(img)
    s = AdjustContrast(2.0)(s)
    cropped, start, end = CropForeground(return_coords=True)(s)
    sp = Spacing(pixdim=(1.5, 1.5, 2.0), mode="bilinear")(cropped)
    return s, cropped, np.asarray(start), np.asarray(end), sp, index_map


def labels_back(lab_model, sp, cropped, start, end, full_shape):
    """MONAI's inverse of Spacing for labels (nearest), then the crop undone with zeros."""
    lab = MetaTensor(torch.from_numpy(lab_model.astype(np.float64))[None], affine=sp.affine)
    back = SpatialResample(mode="nearest", padding_mode="border", align_corners=False)(
        lab, dst_affine=cropped.affine, spatial_size=cropped.shape[1:])
    back = back[0].numpy()
    full = np.zeros(full_shape, np.uint16)
    full[start[0]:end[0], start[1]:end[1], start[2]:end[2]] = np.round(back).astype(np.uint16)
    return full


def preprocessing_reference():
    ct = synthetic_ct()
    aff = make_affine("flip")
    save("ct", ct.astype("<i2"))
    save("ct_affine", aff)
    save("ct_perm_affine", make_affine("perm"))
    s, cropped, start, end, sp, _ = preprocess(ct, aff)
    save("pp_scaled", s[0].numpy().astype("<f4"))
    save("pp_box", np.concatenate([start, end]).astype("<i8"))
    save("pp_crop_affine", np.asarray(cropped.affine, dtype=np.float64))
    save("pp_spacing", sp[0].numpy().astype("<f4"))
    save("pp_spacing_affine", np.asarray(sp.affine, dtype=np.float64))
    # nearest ties would make the check depend on float64 rounding: make sure there are none
    xf = np.linalg.solve(np.asarray(sp.affine), np.asarray(cropped.affine))
    ii = np.stack(np.meshgrid(*[np.arange(n) for n in cropped.shape[1:]], indexing="ij"), 0).reshape(3, -1)
    c = xf[:3, :3] @ ii + xf[:3, 3:4]
    frac = np.abs(c - np.floor(c) - 0.5)
    assert frac.min() > 1e-6, frac.min()
    g = np.random.default_rng(3)
    lab_model = g.integers(0, 6, size=sp.shape[1:]).astype(np.uint16)
    save("pp_lab_model", lab_model.astype("<u2"))
    save("pp_lab_back", labels_back(lab_model, sp, cropped, start, end, ct.shape).astype("<u2"))
    print(f"pp: ct {ct.shape} box {start}..{end} spacing out {tuple(sp.shape[1:])}", file=sys.stderr)

    for case, kind, axcodes in [("flip", "flip", None), ("flip_ras", "flip", "RAS"), ("perm_ras", "perm", "RAS")]:
        a = make_affine(kind)
        s, cropped, start, end, sp, index_map = preprocess(ct, a, axcodes)
        with torch.no_grad():
            logits = sliding_window_inference(sp[None].as_tensor(), (16, 16, 16), 1, conv_predictor(3),
                                              overlap=0.25, mode="gaussian")
        lab = torch.argmax(logits, dim=1)[0].numpy().astype(np.uint16)
        full = labels_back(lab, sp, cropped, start, end, s.shape[1:])
        if index_map is not None:  # undo the orientation: oriented voxel -> source flat index
            src = np.zeros(ct.size, np.uint16)
            src[index_map.reshape(-1)] = full.reshape(-1)
            full = src.reshape(ct.shape)
        save("seg_" + case, full.astype("<u2"))
        print(f"seg {case}: labels {np.bincount(full.reshape(-1))}", file=sys.stderr)


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    dt = {"F32": np.float32, "F16": np.float16, "F64": np.float64}
    sd = {}
    for k, v in header.items():
        b, e = v["data_offsets"]
        sd[k] = torch.from_numpy(np.frombuffer(data[b:e], dtype=dt[v["dtype"]]).reshape(v["shape"]).astype(np.float64))
    return sd, json.loads(meta["sarco.config"])


def unetr_reference():
    sd, cfg = read_safetensors("test/data/unetr/a_conv_instance_res.safetensors")
    kw = dict(cfg["kwargs"])
    kw["img_size"] = tuple(kw["img_size"])
    model = UNETR(**kw).double().eval()
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not unexpected and all("cross_attn" in k for k in missing), (missing, unexpected)
    for name, size, overlap, mode in [("a_gauss", (40, 36, 28), 0.25, "gaussian"),
                                      ("b_small", (20, 40, 24), 0.5, "constant")]:
        x = torch.from_numpy(hashed_input((1, 1) + size))
        with torch.no_grad():
            y = sliding_window_inference(x.double(), kw["img_size"], 1, model, overlap=overlap, mode=mode)
        save("unetr_" + name, y.numpy()[0].astype("<f4"))
        print(f"unetr {name}: {tuple(y.shape)}", file=sys.stderr)


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(2)
    sliding_window_cases()
    preprocessing_reference()
    unetr_reference()


if __name__ == "__main__":
    main()
