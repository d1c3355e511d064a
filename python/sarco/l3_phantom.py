"""Synthetic axial CT slices at L3 with exact tissue areas (numpy only).

    from sarco import l3_phantom
    p = l3_phantom.generate(seed=3)                # 7 slices, L3's centre at slice 3
    p.image        # (nx, ny, nz) float32 HU, indexed [x, y, z]
    p.labels       # (nx, ny, nz) uint8: CLASSES indices
    p.vertebrae    # (nx, ny, nz) uint8: 2 = L2, 3 = L3, 4 = L4 vertebral bodies
    p.truth[z]     # exact areas (cm^2) of slice z: muscle compartment, muscle tissue, IMAT, SAT, VAT, ...
    l3_phantom.write(p, "out/")                    # ct.nii.gz, labels.nii.gz, vertebrae.nii.gz, truth.json

Every structure is an ellipse (or a ring between two concentric ellipses), so every area is known in
closed form (pi a b): the body outline with subcutaneous fat (SAT) between it and the abdominal
wall, the abdominal wall muscles (a ring), the abdominal cavity filled with visceral fat (VAT), the
vertebral body, both psoas and both paraspinal muscles (inside the cavity, near its back), fat
islands inside the paraspinals (intermuscular fat, IMAT) and bowel loops holding gas or fluid. The
layout is drawn at random per seed and accepted only when every shape lies inside its container and
apart from its neighbours with a margin (checked on 720 boundary points per ellipse), so the exact
areas add up: compartment = wall ring + 2 psoas + 2 paraspinals; muscle tissue = compartment - IMAT
islands; VAT = cavity - vertebra - psoas - paraspinals - bowel loops.

The image: each pixel is sampled on a supersampled grid (ss x ss points, default 5); the tissue
fractions mix the tissues' HU (partial volume), optional Gaussian noise is added (noise_hu, 0 =
none) and values are rounded to integers. The label of a pixel is the label with the largest
fraction (ties to the lower label). The islands are labelled skeletal muscle (the compartment, as a
manual muscle outline includes them); thresholds find them as IMAT.

Discretisation bound (stated for the tests): a pixel whose label differs from the continuous truth
must be crossed by a boundary, and with two tissues in it the majority label's error is at most
half a pixel; so |label area - exact area| <= 0.5 x (pixels crossed by the structure's boundary) x
pixel area + the supersampling error (<= 1 / (2 ss) of each such pixel). `mixed_pixels` counts the
crossed pixels per structure (pixels whose supersamples disagree), so the bound is computable.
"""
import json
import os
from dataclasses import dataclass, field

import numpy as np

from .phantom import write_nifti

__all__ = ["CLASSES", "Phantom", "generate", "write", "write_nifti", "VERTEBRA_LABELS"]

CLASSES = ["background", "skeletal_muscle", "subcutaneous_fat", "visceral_fat"]
VERTEBRA_LABELS = {"L2": 2, "L3": 3, "L4": 4}

# tissue codes of the supersampled map
_AIR, _MUSCLE, _SAT, _VAT, _BONE, _GAS, _FLUID, _IMAT = range(8)
_TISSUE_LABEL = np.array([0, 1, 2, 3, 0, 0, 0, 1], dtype=np.int64)


@dataclass
class Phantom:
    image: np.ndarray        # (nx, ny, nz) float32 HU
    labels: np.ndarray       # (nx, ny, nz) uint8
    vertebrae: np.ndarray    # (nx, ny, nz) uint8
    spacing: tuple           # (sx, sy, sz) mm
    affine: np.ndarray       # 4x4
    truth: list              # per slice: dict of exact areas (cm^2) and HU
    mixed_pixels: list       # per slice: {structure: pixels its boundary crosses}
    l3_slice: int
    seed: int
    params: dict = field(default_factory=dict)

    @property
    def classes(self):
        return list(CLASSES)

    def bound_cm2(self, z, structure, ss=None):
        """The discretisation bound (cm^2) of a structure's label area on slice z (module docstring)."""
        ss = ss or self.params["ss"]
        px = self.spacing[0] * self.spacing[1] / 100.0
        return self.mixed_pixels[z][structure] * px * (0.5 + 1.0 / (2 * ss))


class _Ellipse:
    def __init__(self, cx, cy, a, b, theta=0.0):
        self.cx, self.cy, self.a, self.b, self.t = float(cx), float(cy), float(a), float(b), float(theta)

    def area_mm2(self):
        return np.pi * self.a * self.b

    def inside(self, x, y, scale=1.0):
        c, s = np.cos(self.t), np.sin(self.t)
        u = (x - self.cx) * c + (y - self.cy) * s
        v = -(x - self.cx) * s + (y - self.cy) * c
        return (u / (self.a * scale)) ** 2 + (v / (self.b * scale)) ** 2 <= 1.0

    def boundary(self, n=720, scale=1.0):
        p = np.linspace(0, 2 * np.pi, n, endpoint=False)
        c, s = np.cos(self.t), np.sin(self.t)
        u, v = self.a * scale * np.cos(p), self.b * scale * np.sin(p)
        return self.cx + u * c - v * s, self.cy + u * s + v * c

    def bbox(self):
        r = max(self.a, self.b)
        return self.cx - r, self.cx + r, self.cy - r, self.cy + r


def _inside_with_margin(inner, outer, margin_mm):
    """inner lies inside outer with at least ~margin_mm between the boundaries."""
    x, y = inner.boundary()
    grown = _Ellipse(inner.cx, inner.cy, inner.a + margin_mm, inner.b + margin_mm, inner.t)
    gx, gy = grown.boundary()
    return bool(np.all(outer.inside(x, y)) and np.all(outer.inside(gx, gy)))


def _apart(e1, e2, margin_mm):
    g1 = _Ellipse(e1.cx, e1.cy, e1.a + margin_mm, e1.b + margin_mm, e1.t)
    x, y = g1.boundary()
    x2, y2 = e2.boundary()
    return not (np.any(e2.inside(x, y)) or np.any(g1.inside(x2, y2)) or g1.inside(e2.cx, e2.cy))


def _layout(rng, dz):
    """One slice's ellipses, dz = slice offset from L3's centre (shapes change slowly with it)."""
    for _ in range(200):
        a_body, b_body = rng.uniform(145, 170), rng.uniform(108, 128)
        t_sat, t_sat_b = rng.uniform(12, 30), rng.uniform(10, 26)
        wall, wall_b = rng.uniform(9, 14), rng.uniform(7, 11)
        grow = 1.0 + 0.004 * dz
        body = _Ellipse(0, 0, a_body * grow, b_body * grow)
        inner = _Ellipse(0, 0, body.a - t_sat, body.b - t_sat_b)
        cavity = _Ellipse(0, 0, inner.a - wall, inner.b - wall_b)
        # vertebral body, constant over the slices (its centroid is L3's centre exactly)
        v_a, v_b = rng.uniform(20, 25), rng.uniform(15, 19)
        a_pp, b_pp = rng.uniform(22, 29), rng.uniform(16, 21)
        y_pp = -cavity.b + b_pp + rng.uniform(6, 12)
        y_v = y_pp + b_pp + rng.uniform(6, 10) + v_b
        vert = _Ellipse(0, y_v, v_a, v_b)
        x_pp = rng.uniform(4, 8) + a_pp
        para = [_Ellipse(-x_pp, y_pp, a_pp, b_pp, rng.uniform(-0.2, 0.2)),
                _Ellipse(x_pp, y_pp, a_pp * rng.uniform(0.95, 1.05), b_pp * rng.uniform(0.95, 1.05), rng.uniform(-0.2, 0.2))]
        a_ps, b_ps = rng.uniform(13, 18) * (1 + 0.01 * dz), rng.uniform(15, 21) * (1 + 0.01 * dz)
        x_ps = v_a + rng.uniform(5, 9) + a_ps
        psoas = [_Ellipse(-x_ps, y_v + rng.uniform(-4, 6), a_ps, b_ps, rng.uniform(0.2, 0.6)),
                 _Ellipse(x_ps, y_v + rng.uniform(-4, 6), a_ps, b_ps, -rng.uniform(0.2, 0.6))]
        inner_shapes = [vert] + psoas + para
        ok = all(_inside_with_margin(e, cavity, 3.0) for e in inner_shapes)
        ok = ok and all(_apart(inner_shapes[i], inner_shapes[j], 3.0)
                        for i in range(len(inner_shapes)) for j in range(i + 1, len(inner_shapes)))
        if not ok:
            continue
        # intermuscular fat islands inside the paraspinals
        islands = []
        for pp in para:
            for _ in range(int(rng.integers(2, 5))):
                for _try in range(50):
                    r = rng.uniform(1.5, 3.5)
                    ang, rad = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.6)
                    c, s = np.cos(pp.t), np.sin(pp.t)
                    u, v = rad * pp.a * np.cos(ang), rad * pp.b * np.sin(ang)
                    e = _Ellipse(pp.cx + u * c - v * s, pp.cy + u * s + v * c, r, r)
                    if _inside_with_margin(e, pp, 2.0) and all(_apart(e, o, 2.0) for o in islands):
                        islands.append(e)
                        break
        # bowel loops in the front of the cavity
        bowel = []
        for _ in range(int(rng.integers(4, 8))):
            for _try in range(60):
                r = rng.uniform(8, 17)
                e = _Ellipse(rng.uniform(-0.7, 0.7) * cavity.a, rng.uniform(-0.2, 0.75) * cavity.b, r,
                             r * rng.uniform(0.8, 1.2), rng.uniform(0, np.pi))
                if _inside_with_margin(e, cavity, 3.0) and all(_apart(e, o, 3.0) for o in inner_shapes + bowel):
                    bowel.append(e)
                    break
        kinds = [_GAS if rng.random() < 0.6 else _FLUID for _ in bowel]
        return dict(body=body, inner=inner, cavity=cavity, vert=vert, psoas=psoas, para=para, islands=islands,
                    bowel=bowel, bowel_kinds=kinds)
    raise RuntimeError("l3_phantom: no valid layout in 200 draws")


def _truth(L):
    mm2 = 1.0 / 100.0
    wall = L["inner"].area_mm2() - L["cavity"].area_mm2()
    ps = sum(e.area_mm2() for e in L["psoas"])
    pp = sum(e.area_mm2() for e in L["para"])
    isl = sum(e.area_mm2() for e in L["islands"])
    bow = sum(e.area_mm2() for e in L["bowel"])
    comp = wall + ps + pp
    return {
        "muscle_compartment_cm2": comp * mm2,
        "muscle_tissue_cm2": (comp - isl) * mm2,
        "imat_cm2": isl * mm2,
        "abdominal_wall_cm2": wall * mm2,
        "psoas_cm2": ps * mm2,
        "paraspinal_cm2": pp * mm2,
        "sat_cm2": (L["body"].area_mm2() - L["inner"].area_mm2()) * mm2,
        "vat_cm2": (L["cavity"].area_mm2() - L["vert"].area_mm2() - ps - pp - bow) * mm2,
        "vertebral_body_cm2": L["vert"].area_mm2() * mm2,
        "bowel_cm2": bow * mm2,
    }


def _paint(L, X, Y):
    """Tissue codes on the grid X (n,) x Y (m,) (mm), painted from the outside in; each shape is only
    evaluated inside its bounding box."""
    t = np.full((X.size, Y.size), _AIR, dtype=np.uint8)

    def put(e, code):
        x0, x1, y0, y1 = e.bbox()
        i0, i1 = np.searchsorted(X, [x0, x1])
        j0, j1 = np.searchsorted(Y, [y0, y1])
        if i1 <= i0 or j1 <= j0:
            return
        sub = t[i0:i1, j0:j1]
        sub[e.inside(X[i0:i1, None], Y[None, j0:j1])] = code

    put(L["body"], _SAT)
    put(L["inner"], _MUSCLE)
    put(L["cavity"], _VAT)
    put(L["vert"], _BONE)
    for e in L["psoas"] + L["para"]:
        put(e, _MUSCLE)
    for e in L["islands"]:
        put(e, _IMAT)
    for e, k in zip(L["bowel"], L["bowel_kinds"]):
        put(e, k)
    return t


def _mixed(m4):
    """Pixels (nx, ny) whose supersamples are not all equal."""
    return m4.any(axis=(1, 3)) & ~m4.all(axis=(1, 3))


def generate(seed=0, shape=(384, 320), spacing=(1.0, 1.0), nz=7, slice_mm=3.0, ss=5, noise_hu=6.0):
    """A stack of nz axial slices around L3 (centre slice nz // 2). shape (nx, ny), spacing (sx, sy) mm."""
    if nz < 1 or nz % 2 == 0:
        raise ValueError("nz must be odd and >= 1")
    rng = np.random.default_rng(seed)
    nx, ny = int(shape[0]), int(shape[1])
    sx, sy = float(spacing[0]), float(spacing[1])
    hu = {"muscle": rng.uniform(32, 55), "sat": rng.uniform(-115, -95), "vat": rng.uniform(-105, -85),
          "imat": rng.uniform(-110, -80), "bone": rng.uniform(180, 320), "gas": -1000.0, "fluid": rng.uniform(5, 25),
          "air": -1000.0}
    tissue_hu = np.array([hu["air"], hu["muscle"], hu["sat"], hu["vat"], hu["bone"], hu["gas"], hu["fluid"],
                          hu["imat"]])
    zc = nz // 2
    # supersample offsets within a pixel
    off = (np.arange(ss) + 0.5) / ss - 0.5
    ix = (np.arange(nx) - (nx - 1) / 2.0) * sx
    iy = (np.arange(ny) - (ny - 1) / 2.0) * sy
    X = (ix[:, None] + off[None, :] * sx).reshape(-1)          # nx*ss
    Y = (iy[:, None] + off[None, :] * sy).reshape(-1)          # ny*ss
    image = np.empty((nx, ny, nz), np.float32)
    labels = np.empty((nx, ny, nz), np.uint8)
    vert = np.zeros((nx, ny, nz), np.uint8)
    truth, mixed = [], []
    layouts = []
    base = rng.integers(0, 2**31)
    for z in range(nz):
        L = _layout(np.random.default_rng([int(base), 0]), 0.0)  # same anatomy ...
        dz = z - zc
        if dz:  # ... changing slowly along z: shapes scaled about their centres (vertebra kept)
            Lz = _layout(np.random.default_rng([int(base), 0]), float(dz))
            Lz["vert"] = L["vert"]
            ok = all(_inside_with_margin(e, Lz["cavity"], 1.0) for e in [Lz["vert"]] + Lz["psoas"] + Lz["para"] + Lz["bowel"])
            L = Lz if ok else L
        layouts.append(L)
        t = _paint(L, X, Y).reshape(nx, ss, ny, ss)
        frac = np.zeros((8, nx, ny))
        for k in range(8):
            frac[k] = (t == k).mean(axis=(1, 3))
        img = np.tensordot(tissue_hu, frac, axes=1)
        if noise_hu > 0:
            img = img + rng.normal(0, noise_hu, size=img.shape)
        image[:, :, z] = np.round(img).astype(np.float32)
        lf = np.zeros((len(CLASSES), nx, ny))
        for k in range(8):
            lf[_TISSUE_LABEL[k]] += frac[k]
        labels[:, :, z] = np.argmax(lf, axis=0).astype(np.uint8)  # ties -> lower label
        tz = _truth(L)
        tz["hu"] = {k: float(v) for k, v in hu.items()}
        truth.append(tz)
        masks = {"muscle_compartment": (t == _MUSCLE) | (t == _IMAT), "sat": t == _SAT, "vat": t == _VAT,
                 "imat": t == _IMAT}
        mixed.append({k: int(np.count_nonzero(_mixed(m))) for k, m in masks.items()})
        vb = L["vert"].inside(ix[:, None], iy[None, :])
        code = VERTEBRA_LABELS["L3"] if 1 <= z <= nz - 2 or nz < 3 else (
            VERTEBRA_LABELS["L4"] if z == 0 else VERTEBRA_LABELS["L2"])
        vert[:, :, z][vb] = code
    affine = np.diag([sx, sy, float(slice_mm), 1.0])
    affine[:3, 3] = [-(nx - 1) / 2.0 * sx, -(ny - 1) / 2.0 * sy, -zc * float(slice_mm)]
    params = {"seed": seed, "shape": [nx, ny], "spacing": [sx, sy], "nz": nz, "slice_mm": slice_mm, "ss": ss,
              "noise_hu": noise_hu, "hu": hu}
    return Phantom(image, labels, vert, (sx, sy, float(slice_mm)), affine, truth, mixed, zc, seed, params)


def write(p, out_dir):
    """ct.nii.gz, labels.nii.gz, vertebrae.nii.gz (on one grid) and truth.json in out_dir."""
    os.makedirs(out_dir, exist_ok=True)
    write_nifti(os.path.join(out_dir, "ct.nii.gz"), p.image, p.affine, dtype=np.int16)
    write_nifti(os.path.join(out_dir, "labels.nii.gz"), p.labels, p.affine, dtype=np.uint8, intent_label=True)
    write_nifti(os.path.join(out_dir, "vertebrae.nii.gz"), p.vertebrae, p.affine, dtype=np.uint8, intent_label=True)
    doc = {"classes": CLASSES, "vertebra_labels": VERTEBRA_LABELS, "l3_slice": p.l3_slice, "spacing_mm": list(p.spacing),
           "params": p.params, "truth": p.truth, "mixed_pixels": p.mixed_pixels,
           "bound_note": "|label area - exact| <= mixed_pixels x pixel area x (0.5 + 1 / (2 ss))"}
    with open(os.path.join(out_dir, "truth.json"), "w") as f:
        json.dump(doc, f, indent=1)
    return out_dir
