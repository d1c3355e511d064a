"""Synthetic thigh CT phantoms with a label map and exact per-muscle volumes (numpy only).

    from sarco import phantom
    p = phantom.generate(seed=7, shape=(192, 192, 48), spacing=(0.8, 0.8, 2.5))
    p.image      # float32 HU, indexed [x, y, z] (integer-valued, as a scanner stores them)
    p.labels     # uint8 labels on the same grid, names in phantom.CLASSES
    p.volumes_ml # {name: exact volume of the continuous shape in mL}
    phantom.write_nifti("ct.nii.gz", p.image, p.affine)

One phantom is a mid-thigh CT of a right leg in RAS+ voxel axes (x towards the patient's left, so
lateral is -x; y anterior; z superior): air, skin, subcutaneous fat, a femur (cortex and fatty
marrow) and six muscle compartments (rectus femoris, vastus lateralis, intermedius and medialis,
adductors, hamstrings) that fill the space inside the fascia, separated by intermuscular fat planes
2.2..3.5 mm thick (the rectus femoris sheath 1.2 times that). The compartments are the cells of a
power diagram around the femur whose seeds drift along z, computed in smoothly warped coordinates,
so every boundary is a smooth curved surface. Labels: CLASSES (0 background, 1..6 the muscles, 7
femur); fat planes, fat, skin and air are background.

Random per seed: thigh size (half-widths 50..66 x 46..60 mm), ellipticity, outline harmonics, taper
and tilt along z, in-plane rotation (+-12 degrees) and position in the field of view; fat thickness
(5..14 mm); femur size, position and cortex thickness; the compartment seeds and the warp; tissue HU
(muscle means 28..55 HU, fat -115..-85 HU, skin 5..40 HU, cortex 1100..1500 HU, marrow -80..10 HU);
the point-spread function (sigma 0.45..0.75 mm in-plane); the noise level (8..18 HU, spatially
correlated). Without an explicit grid the spacing is anisotropic (in-plane 0.65..1.0 mm, slices
2.0, 2.5 or 3.0 mm) and the field of view is the thigh plus 15..45 mm on each side, 100..160 mm long.
With a grid that is too small the anatomy shrinks to fit (ValueError below 60 %).

How the image is formed: every voxel is sampled on a supersampled grid (default 3 x 3 in-plane, 1
along z; voxels whose 3 x 3 neighbourhood of centres holds one tissue only are taken as uniform, which
gives the same label maps as sampling every voxel); the fraction of each tissue in the voxel mixes
the tissues' HU (partial volume), the result is blurred with a Gaussian point-spread function,
correlated Gaussian noise is added and the values are rounded to integers. The label of a voxel is
the label with the largest fraction (ties to the lower label); `volumes_ml` integrates the
fractions, so it is the volume of the continuous shape up to the supersampling (3x3x1 and 8x8x4
agree to 0.02 % per structure, and the femur matches its analytic volume, test_phantom.py).
`label_volumes_ml` counts the label map's voxels instead (0.11..0.22 % from the exact volumes on
seeds 0, 500, 1000, 1004, 1007).

Determinism: one seed gives the same phantom on every run (numpy's PCG64 stream; the image is
integer-valued, so last-bit differences of sin/cos between machines cannot change it except at exact
rounding ties).
"""
import gzip
import os
import struct
import tempfile
from dataclasses import dataclass, field

import numpy as np

__all__ = ["CLASSES", "MUSCLES", "GROUPS", "HELD_OUT", "Phantom", "generate", "write_nifti", "gaussian_blur",
           "voxel_volume_ml"]

CLASSES = ["background", "rectus_femoris", "vastus_lateralis", "vastus_intermedius", "vastus_medialis",
           "adductors", "hamstrings", "femur"]
MUSCLES = list(range(1, 7))
GROUPS = {"quadriceps": [1, 2, 3, 4], "adductors": [5], "hamstrings": [6]}
# The phantom `make demo` and test/python/test_demo.py use. Seeds below 1000 are reserved for
# training and validating the demo model (tools/train_demo.py).
HELD_OUT = {"seed": 1000, "shape": (192, 192, 48), "spacing": (0.8, 0.8, 2.5)}

# tissue codes on the supersampled grid
_AIR, _SKIN, _FAT, _SEPTUM, _CORTEX, _MARROW = 0, 7, 8, 9, 10, 11  # 1..6 are the muscles
_NT = 12
# septum width factor per compartment: rectus femoris lies in its own fascial sheath with fat around it
_SHEATH = np.array([1.2, 1.0, 1.0, 1.0, 1.0, 1.0])
_TISSUE_LABEL = np.array([0, 1, 2, 3, 4, 5, 6, 0, 0, 0, 7, 7], dtype=np.int64)
_NL = len(CLASSES)

# compartment seeds around the femur, in CLASSES order 1..6: angle (degrees; 0 = lateral, 90 =
# anterior), fraction of the femur-to-fascia distance, power-diagram weight (in units of that
# distance squared; larger = bigger cell)
_SEEDS = np.array([[95.0, 0.74, 0.15], [12.0, 0.62, 0.0], [82.0, 0.20, 0.06], [148.0, 0.60, 0.0],
                   [218.0, 0.60, 0.0], [292.0, 0.62, 0.0]])


@dataclass
class Phantom:
    image: np.ndarray          # (nx, ny, nz) float32 HU, integer-valued
    labels: np.ndarray         # (nx, ny, nz) uint8, CLASSES indices
    spacing: tuple             # (sx, sy, sz) mm
    affine: np.ndarray         # 4x4 voxel -> RAS+ mm
    volumes_ml: dict           # name -> exact volume of the continuous shape (mL), muscles and femur
    label_volumes_ml: dict     # name -> voxels of the label map x voxel volume (mL)
    seed: int
    params: dict = field(default_factory=dict)

    @property
    def classes(self):
        return list(CLASSES)

    def volume_errors_percent(self, labels, which=MUSCLES):
        """{label: 100 (voxels of `labels` == label x voxel volume - exact volume) / exact volume}
        for a label map on this phantom's grid (a segmentation's volume error against the truth)."""
        vv = voxel_volume_ml(self.affine)
        true = {l: self.volumes_ml[CLASSES[l]] for l in which}
        return {l: 100.0 * (np.count_nonzero(labels == l) * vv - true[l]) / true[l] for l in which}


def voxel_volume_ml(affine):
    return abs(float(np.linalg.det(np.asarray(affine, dtype=np.float64)[:3, :3]))) / 1000.0


def _gauss_kernel(sigma_vox):
    r = max(1, int(np.ceil(3.0 * sigma_vox)))
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma_vox) ** 2)
    return k / k.sum()


def gaussian_blur(a, sigma_vox):
    """Separable Gaussian filter of a 3-D array, sigma in voxels per axis (0 = that axis untouched),
    edges replicated (like scipy.ndimage.gaussian_filter mode='nearest', truncate=3)."""
    out = np.asarray(a, dtype=np.float64)
    for ax, s in enumerate(sigma_vox):
        if s <= 0:
            continue
        k = _gauss_kernel(float(s))
        r = len(k) // 2
        pad = [(0, 0)] * out.ndim
        pad[ax] = (r, r)
        p = np.pad(out, pad, mode="edge")
        n = out.shape[ax]
        acc = np.zeros_like(out)
        for i, w in enumerate(k):
            acc += w * np.take(p, np.arange(i, i + n), axis=ax)
        out = acc
    return out


def _rand_sines(rng, n, amp, wavelength, zscale):
    """Parameters of a sum of n plane waves a sin(k . (u, v, z) + phase)."""
    a = rng.uniform(*amp, size=n)
    lam = rng.uniform(*wavelength, size=n)
    ang = rng.uniform(0, 2 * np.pi, size=n)
    kz = rng.uniform(-1, 1, size=n) * zscale
    k = np.stack([np.cos(ang), np.sin(ang), kz], 1) * (2 * np.pi / lam)[:, None]
    return a, k, rng.uniform(0, 2 * np.pi, size=n)


def _eval_sines(s, u, v, z):
    a, k, ph = s
    out = np.zeros_like(u)
    for i in range(len(a)):
        out += a[i] * np.sin(k[i, 0] * u + k[i, 1] * v + (k[i, 2] * z + ph[i]))
    return out


def _params(rng, spacing, shape):
    P = {}
    P["A"] = rng.uniform(50.0, 66.0)         # lateral half-width of the thigh (mm)
    P["B"] = rng.uniform(46.0, 60.0)         # anteroposterior half-width
    P["harm"] = [(h, rng.uniform(0, 0.025), rng.uniform(0, 2 * np.pi), rng.uniform(-0.01, 0.01)) for h in (2, 3, 4)]
    P["taper"] = rng.uniform(0.0, 0.04)      # relative growth of the section per 100 mm towards superior
    P["tilt"] = rng.uniform(-0.05, 0.05, size=2)  # mm of in-plane drift per mm along z
    P["rot"] = np.deg2rad(rng.uniform(-12.0, 12.0))
    P["skin"] = rng.uniform(1.2, 2.2)
    P["fat"] = rng.uniform(5.0, 14.0)
    P["fat_harm"] = [(h, rng.uniform(0, 0.2), rng.uniform(0, 2 * np.pi)) for h in (1, 2, 3)]
    P["femur_c"] = np.array([0.04 * P["A"] + rng.normal(0, 2.5), 0.05 * P["B"] + rng.normal(0, 2.5)])
    P["femur_r"] = rng.uniform(11.0, 14.5)
    P["femur_ecc"] = rng.uniform(0.9, 1.1)
    P["cortex"] = rng.uniform(3.5, 6.0)
    seeds = _SEEDS.copy()
    seeds[:, 0] += rng.normal(0, 4.0, size=6)
    seeds[:, 1] += rng.normal(0, 0.03, size=6)
    P["seeds"] = seeds
    P["seed_drift"] = np.stack([rng.uniform(2, 6, 6), rng.uniform(150, 400, 6), rng.uniform(0, 2 * np.pi, 6),
                                rng.uniform(0.01, 0.04, 6)], 1)
    P["warp_u"] = _rand_sines(rng, 2, (1.0, 2.5), (50.0, 100.0), 0.3)
    P["warp_v"] = _rand_sines(rng, 2, (1.0, 2.5), (50.0, 100.0), 0.3)
    P["septum"] = rng.uniform(2.2, 3.5)
    P["hu_muscle"] = rng.uniform(28.0, 55.0, size=6)
    P["hu_texture"] = _rand_sines(rng, 2, (1.5, 3.5), (20.0, 60.0), 0.5)
    P["hu_fat"] = rng.uniform(-115.0, -85.0)
    P["hu_skin"] = rng.uniform(5.0, 40.0)
    P["hu_cortex"] = rng.uniform(1100.0, 1500.0)
    P["hu_marrow"] = rng.uniform(-80.0, 10.0)
    P["psf_mm"] = rng.uniform(0.45, 0.75)
    P["noise_hu"] = rng.uniform(8.0, 18.0)
    if spacing is None:
        s_in = round(float(rng.uniform(0.65, 1.0)), 3)
        spacing = (s_in, s_in, float(rng.choice([2.0, 2.5, 3.0])))
    spacing = tuple(float(s) for s in spacing)
    # the thigh's largest in-plane reach from its axis (outline harmonics and taper included)
    reach = max(P["A"], P["B"]) * (1.0 + sum(h[1] for h in P["harm"]) + 0.01)
    if shape is None:
        length = rng.uniform(100.0, 160.0)
        nz = max(8, int(round(length / spacing[2])))
        zlen = nz * spacing[2]
        reach_z = reach * (1 + P["taper"] * 0.5 * zlen / 100.0) + np.abs(P["tilt"]).max() * 0.5 * zlen
        fov = [2 * reach_z + 2 * rng.uniform(15.0, 45.0) for _ in range(2)]
        shape = (int(np.ceil(fov[0] / spacing[0])), int(np.ceil(fov[1] / spacing[1])), nz)
    shape = tuple(int(n) for n in shape)
    zlen = shape[2] * spacing[2]
    fov = np.array([shape[0] * spacing[0], shape[1] * spacing[1]])
    # shrink the anatomy if the requested grid is too small for it (4 mm margin)
    drift = np.abs(P["tilt"]) * 0.5 * zlen
    reach = reach * (1 + P["taper"] * 0.5 * zlen / 100.0)
    need = reach + drift
    room = 0.5 * fov - 4.0
    f = min(1.0, float(np.min(room / need)))
    if f < 0.6:
        raise ValueError(f"phantom: a grid of {shape} at {spacing} mm is too small for a thigh")
    if f < 1.0:
        for k in ("A", "B", "femur_r", "fat"):
            P[k] *= f
        P["femur_c"] = P["femur_c"] * f
        reach *= f
        need = reach + drift
    slack = np.maximum(room - need, 0.0)
    P["centre"] = 0.5 * fov + rng.uniform(-1, 1, size=2) * slack  # thigh axis at mid-z, mm from voxel 0
    P["zmid"] = 0.5 * (shape[2] - 1) * spacing[2]
    P["reach"] = float(reach)  # without the drift along z
    return P, spacing, shape


def _tissue(P, x, y, z):
    """Tissue code of points (x, y) mm (grid coordinates from voxel 0's centre) on the plane z mm."""
    dz = z - P["zmid"]
    scale = 1.0 + P["taper"] * dz / 100.0
    cx, cy = P["centre"] + P["tilt"] * dz
    # local frame: u lateral (= -x for a right leg), v anterior; rotated by rot
    dx, dy = x - cx, y - cy
    cr, sr = np.cos(P["rot"]), np.sin(P["rot"])
    u = -(cr * dx + sr * dy)
    v = -sr * dx + cr * dy
    A, B = P["A"] * scale, P["B"] * scale
    r = np.hypot(u, v)
    e = (u + 1j * v) / np.maximum(r, 1e-9)   # exp(i theta)
    # outline harmonics sum a cos(h theta + phase): Re(e^h exp(i phase))
    mod = np.ones_like(r)
    fm = np.ones_like(r)
    eh = {1: e}
    for h in (2, 3, 4):
        eh[h] = eh[h - 1] * e
    for h, a, ph, w in P["harm"]:
        mod += a * (eh[h] * np.exp(1j * (ph + w * dz))).real
    for h, a, ph in P["fat_harm"]:
        fm += a * (eh[h] * np.exp(1j * ph)).real
    r_skin = A * B * r / np.maximum(np.hypot(B * u, A * v), 1e-9) * mod
    r_fascia = r_skin - P["skin"] - np.maximum(P["fat"] * fm, 3.0)

    t = np.zeros(x.shape, dtype=np.uint8)
    inside = r < r_skin
    t[inside] = _SKIN
    t[r < r_skin - P["skin"]] = _FAT
    # femur
    fc = P["femur_c"] * scale
    R = P["femur_r"] * scale
    rf = np.hypot((u - fc[0]) * P["femur_ecc"], (v - fc[1]) / P["femur_ecc"])
    bone = rf < R
    # compartments: power diagram (equal weights) of drifting seeds in warped coordinates
    sd = P["seed_drift"]
    ang = np.deg2rad(P["seeds"][:, 0] + sd[:, 0] * np.sin(2 * np.pi * dz / sd[:, 1] + sd[:, 2]))
    rho = P["seeds"][:, 1] + sd[:, 3] * np.sin(2 * np.pi * dz / sd[:, 1] + sd[:, 2] + 1.0)
    # distance from the femur centre to the mean fascia along each seed's direction
    ra = (A * B / np.sqrt((B * np.cos(ang)) ** 2 + (A * np.sin(ang)) ** 2)) - P["skin"] - P["fat"]
    dist = R + rho * (ra - R)
    su = fc[0] + dist * np.cos(ang)
    sv = fc[1] + dist * np.sin(ang)
    m = np.nonzero((r < r_fascia) & ~bone)
    if m[0].size:
        pu, pv = u[m], v[m]
        pu, pv = pu + _eval_sines(P["warp_u"], pu, pv, dz), pv + _eval_sines(P["warp_v"], pu, pv, dz)
        wk = P["seeds"][:, 2] * (ra - R) ** 2
        d2 = (pu[None, :] - su[:, None]) ** 2 + (pv[None, :] - sv[:, None]) ** 2 - wk[:, None]  # (6, n)
        order = np.argsort(d2, axis=0, kind="stable")
        k1, k2 = order[0], order[1]
        cols = np.arange(pu.size)
        sep = np.hypot(su[k1] - su[k2], sv[k1] - sv[k2])
        db = (d2[k2, cols] - d2[k1, cols]) / (2.0 * sep)  # distance to the radical axis
        width = P["septum"] * np.maximum(_SHEATH[k1], _SHEATH[k2])
        t[m] = np.where(db < 0.5 * width, _SEPTUM, k1 + 1).astype(np.uint8)
    t[bone] = _CORTEX
    t[bone & (rf < R - P["cortex"] * scale)] = _MARROW
    t[~inside] = _AIR
    return t


def generate(seed, shape=None, spacing=None, supersample=(3, 3, 1)):
    """One phantom from an integer seed. shape (nx, ny, nz) and spacing (sx, sy, sz) mm fix the grid
    (the anatomy shrinks to fit a small grid); left None they are drawn from the seed."""
    rng = np.random.default_rng(int(seed))
    P, spacing, shape = _params(rng, spacing, shape)
    nx, ny, nz = shape
    sx, sy, sz = spacing
    ss = tuple(int(v) for v in supersample)
    # voxels that can hold the thigh (box of the axis drift plus the reach, 3 mm margin)
    zs = np.array([0.0, (nz - 1) * sz]) - P["zmid"]
    cx = P["centre"][0] + P["tilt"][0] * zs
    cy = P["centre"][1] + P["tilt"][1] * zs
    rr = P["reach"] + 3.0
    i0 = max(0, int(np.floor((cx.min() - rr) / sx)))
    i1 = min(nx, int(np.ceil((cx.max() + rr) / sx)) + 1)
    j0 = max(0, int(np.floor((cy.min() - rr) / sy)))
    j1 = min(ny, int(np.ceil((cy.max() + rr) / sy)) + 1)
    ni, nj = i1 - i0, j1 - j0
    off = [(np.arange(s) + 0.5) / s - 0.5 for s in ss]
    nsub = ss[0] * ss[1] * ss[2]
    xc, yc = np.meshgrid(np.arange(i0, i1) * sx, np.arange(j0, j1) * sy, indexing="ij")
    sub_x = (off[0][:, None] * sx + 0 * off[1][None, :]).reshape(-1)  # (ss0 * ss1,) offsets in mm
    sub_y = (0 * off[0][:, None] + off[1][None, :] * sy).reshape(-1)

    base = np.zeros(_NT)
    base[1:7] = P["hu_muscle"]
    base[[_AIR, _SKIN, _FAT, _SEPTUM, _CORTEX, _MARROW]] = [-1000.0, P["hu_skin"], P["hu_fat"], P["hu_fat"],
                                                             P["hu_cortex"], P["hu_marrow"]]
    hu = np.full(shape, -1000.0)
    labels = np.zeros(shape, dtype=np.uint8)
    lab_frac_sum = np.zeros(_NL)
    agg = np.zeros((_NT, _NL))
    agg[np.arange(_NT), _TISSUE_LABEL] = 1.0
    for k in range(nz):
        counts = np.zeros(ni * nj * _NT)
        for oz in off[2]:
            z = (k + oz) * sz
            # Voxel centres first; only voxels whose 3x3 neighbourhood holds more than one tissue are
            # supersampled (every structure is at least a voxel wide or separates two different
            # tissues, so a uniform neighbourhood means a uniform voxel; checked against full
            # supersampling in the docstring's figures).
            tc = _tissue(P, xc, yc, z)
            pad = np.pad(tc, 1, mode="edge")
            mixed = np.zeros(tc.shape, dtype=bool)
            for di in (0, 1, 2):
                for dj in (0, 1, 2):
                    mixed |= pad[di:di + ni, dj:dj + nj] != tc
            flat = np.arange(ni * nj) * _NT
            keep = ~mixed.reshape(-1)
            counts[flat[keep] + tc.reshape(-1)[keep]] += ss[0] * ss[1]
            bi, bj = np.nonzero(mixed)
            if bi.size:
                t = _tissue(P, xc[bi, bj][:, None] + sub_x[None, :], yc[bi, bj][:, None] + sub_y[None, :], z)
                vb = np.repeat((bi * nj + bj) * _NT, ss[0] * ss[1])
                counts += np.bincount(vb + t.reshape(-1), minlength=ni * nj * _NT)
        frac = counts.reshape(ni, nj, _NT) / nsub
        zc = k * sz - P["zmid"]
        tex = _eval_sines(P["hu_texture"], xc, yc, zc)
        hu[i0:i1, j0:j1, k] = frac @ base + frac[:, :, 1:7].sum(-1) * tex
        lf = frac @ agg
        labels[i0:i1, j0:j1, k] = np.argmax(lf, axis=-1)
        lab_frac_sum += lf.sum((0, 1))
    # point-spread function, then correlated noise, then integer HU
    hu = gaussian_blur(hu, (P["psf_mm"] / sx, P["psf_mm"] / sy, 0.35))  # slice profile: 0.35 slice
    noise = gaussian_blur(rng.standard_normal(shape), (0.7, 0.7, 0.0))
    noise *= P["noise_hu"] / max(float(noise.std()), 1e-12)
    img = np.round(hu + noise).astype(np.float32)

    affine = np.diag([sx, sy, sz, 1.0])
    affine[:3, 3] = [-0.5 * nx * sx, -0.5 * ny * sy, -0.5 * nz * sz]
    vv = voxel_volume_ml(affine)
    volumes = {CLASSES[l]: float(lab_frac_sum[l] * vv) for l in range(1, _NL)}
    counts = np.bincount(labels.reshape(-1), minlength=_NL)
    label_volumes = {CLASSES[l]: float(counts[l] * vv) for l in range(1, _NL)}
    params = {"spacing": spacing, "shape": shape, "thigh_half_widths_mm": [P["A"], P["B"]],
              "rotation_deg": float(np.rad2deg(P["rot"])), "noise_hu": P["noise_hu"], "psf_mm": P["psf_mm"],
              "muscle_hu": [float(h) for h in P["hu_muscle"]], "fat_hu": P["hu_fat"], "septum_mm": P["septum"]}
    return Phantom(img, labels, spacing, affine, volumes, label_volumes, int(seed), params)


# --- NIfTI-1 writer ---------------------------------------------------------------------------

_NIFTI_TYPES = {np.dtype(np.uint8): (2, 8), np.dtype(np.int16): (4, 16), np.dtype(np.int32): (8, 32),
                np.dtype(np.float32): (16, 32), np.dtype(np.float64): (64, 64), np.dtype(np.uint16): (512, 16)}


def write_nifti(path, data, affine, dtype=None, intent_label=False):
    """Writes a 3-D array indexed [x, y, z] as a single-file NIfTI-1 (.nii, or gzip for .nii.gz) with
    the affine as sform (code 1, scanner), spacing in mm, little-endian. dtype: uint8, int16, uint16,
    int32, float32 or float64 (default: the array's). The file is written atomically."""
    a = np.asarray(data)
    if a.ndim != 3:
        raise ValueError(f"write_nifti: need a 3-D array, got shape {a.shape}")
    dt = np.dtype(dtype) if dtype is not None else a.dtype
    if dt not in _NIFTI_TYPES:
        raise ValueError(f"write_nifti: dtype {dt} is not supported")
    if dt.kind in "iu" and a.dtype.kind == "f":
        info = np.iinfo(dt)
        if a.size and (a.min() < info.min or a.max() > info.max or np.any(a != np.round(a))):
            raise ValueError(f"write_nifti: values do not fit {dt} exactly")
    code, bitpix = _NIFTI_TYPES[dt]
    aff = np.asarray(affine, dtype=np.float64)
    sp = np.sqrt((aff[:3, :3] ** 2).sum(0))
    h = bytearray(348)
    struct.pack_into("<i", h, 0, 348)
    struct.pack_into("<8h", h, 40, 3, a.shape[0], a.shape[1], a.shape[2], 1, 1, 1, 1)
    struct.pack_into("<h", h, 68, 1002 if intent_label else 0)   # intent_code
    struct.pack_into("<hh", h, 70, code, bitpix)
    struct.pack_into("<8f", h, 76, 1.0, sp[0], sp[1], sp[2], 1.0, 1.0, 1.0, 1.0)
    struct.pack_into("<f", h, 108, 352.0)                         # vox_offset
    struct.pack_into("<ff", h, 112, 1.0, 0.0)                     # scl_slope, scl_inter
    h[123] = 10                                                   # xyzt_units: mm, s
    struct.pack_into("<hh", h, 252, 0, 1)                         # qform_code, sform_code
    for r in range(3):
        struct.pack_into("<4f", h, 280 + 16 * r, *aff[r, :4])
    h[344:348] = b"n+1\0"
    body = bytes(h) + b"\0\0\0\0" + np.asfortranarray(a.astype(dt.newbyteorder("<"))).tobytes(order="F")
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp_nifti_")
    try:
        with os.fdopen(fd, "wb") as f:
            if str(path).endswith(".gz"):
                with gzip.GzipFile(fileobj=f, mode="wb", compresslevel=4, mtime=0) as g:
                    g.write(body)
            else:
                f.write(body)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _main(argv=None):
    import argparse
    import json
    ap = argparse.ArgumentParser(prog="python3 -m sarco.phantom", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--shape", type=int, nargs=3)
    ap.add_argument("--spacing", type=float, nargs=3)
    ap.add_argument("--ct", required=True, help="output CT (.nii or .nii.gz, int16 HU)")
    ap.add_argument("--labels", help="output label map (.nii or .nii.gz, uint8)")
    ap.add_argument("--json", help="output: exact and label-map volumes, parameters")
    a = ap.parse_args(argv)
    p = generate(a.seed, a.shape, a.spacing)
    write_nifti(a.ct, p.image, p.affine, dtype=np.int16)
    if a.labels:
        write_nifti(a.labels, p.labels, p.affine, intent_label=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"seed": p.seed, "classes": CLASSES, "groups": GROUPS, "volumes_ml": p.volumes_ml,
                       "label_volumes_ml": p.label_volumes_ml, "params": p.params}, f, indent=1)


if __name__ == "__main__":
    _main()
