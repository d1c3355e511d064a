"""Synthetic transverse ultrasound images of the rectus femoris with an exact label mask and the
continuous shape's true area and thickness (numpy only).

    from sarco import us_phantom
    p = us_phantom.generate(seed=3)
    p.image        # uint8 (rows, cols): rows run down into the thigh (depth), columns across
    p.labels       # uint8 (rows, cols): 1 = rectus femoris (LABELS), 0 elsewhere
    p.spacing      # (row mm, col mm) pixel size
    p.truth        # {"csa_mm2", "mt_mm", "mt_max_mm", "width_mm", ...} of the continuous shape
    us_phantom.write_png("us.png", p.image, p.spacing)     # grey PNG with pHYs (pixels per metre)

    python3 -m sarco.us_phantom --seed 3 --out DIR      # DIR/us.png, DIR/labels.png, DIR/truth.json

What one image holds, top to bottom: coupling gel (dark), the skin line (bright, 0.4..0.7 mm below the
probe, gently curved), subcutaneous fat (3..7 mm, hypoechoic with oblique bright connective strands),
the deep fascia (a bright line), the rectus femoris (a convex ovoid 21..32 mm wide and 13..20 mm deep,
outlined by its bright epimysium, hypoechoic muscle with the bright dots and short septa of the
"starry night" texture), the vastus intermedius and the vasti on either side (muscle texture of other
brightness) and the femur: a bright curved cortex with the acoustic shadow below it. The image is
formed as a scanner would: diffuse scattering is fully developed speckle (complex Gaussian
scatterers convolved with a point-spread function 0.25 mm axial x 0.6 mm lateral FWHM-ish, envelope
detected), specular lines add coherently, depth attenuation with time-gain compensation, then 50..60
dB log compression to 8 bits.

The rectus femoris outline is x = x0 + a rho(t) cos t, y = y0 + b rho(t) sin t with
rho = 1 + c2 cos(2t + p2) + c3 cos(3t + p3), |c2|, |c3| <= 0.04: convex, so every column meets it in
one interval. Its area is exactly pi a b (1 + (c2^2 + c3^2) / 2). Its thickness follows libsarco's
definition (docs/measure.md): the vertical extent L(x) of the shape at x, MT = the median of L over
the central third of the horizontal span, mt_max = max L; these are computed on a 20000-vertex
polygon of the outline and 200001 values of x (error < 1e-4 mm against the ellipse's closed forms,
test_us_phantom.py). A pixel is
labelled when its centre lies inside the outline.

Measuring the label mask itself can only differ from the truth by discretisation; for a convex shape
(each column's extent counts the pixel centres inside one chord: within one row of it):
    |CSA_mask - CSA| <= width x row_mm + 2 x mt_max x col_mm   (columns, plus the two end columns)
    |MT_mask - MT|   <= row_mm + 2 x col_mm x max |dL/dx| over the central third
    |mt_max_mask - mt_max| <= row_mm + col_mm x max |dL/dx| within one column of the tallest chord
`truth["bounds"]` holds these numbers for each image.

Random per seed: pixel size (10000..13000 pixels per metre, square: 0.077..0.1 mm), skin depth and
curve, fat thickness, the muscle's size, harmonics and position, the intermedius thickness, femur
radius and depth, tissue brightness, the strands and dots, the dynamic range. Deterministic per seed
(numpy's PCG64 stream).
"""
import json
import os
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

__all__ = ["LABELS", "HELD_OUT", "UsPhantom", "generate", "write_png", "outline_truth"]

LABELS = {0: "background", 1: "rectus_femoris"}
ROWS, COLS = 400, 480
# a phantom no training set should use (the nnU-Net demo model trains on seeds below 1000)
HELD_OUT = 1000


@dataclass
class UsPhantom:
    seed: int
    image: np.ndarray          # uint8 (rows, cols)
    labels: np.ndarray         # uint8 (rows, cols)
    spacing: tuple             # (row mm, col mm)
    truth: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)


def _rho(t, c2, p2, c3, p3):
    return 1.0 + c2 * np.cos(2 * t + p2) + c3 * np.cos(3 * t + p3)


def outline_truth(x0, y0, a, b, c2, p2, c3, p3, near=0.1, n_vertices=20000, n_x=200001):
    """The continuous shape's area (closed form), and its vertical extents L(x) on n_x values of x:
    MT (median over the central third of [xmin, xmax]), mt_max, width; max |dL/dx| over the central
    third and within `near` mm of where L is largest (for the discretisation bounds)."""
    area = np.pi * a * b * (1.0 + 0.5 * (c2 * c2 + c3 * c3))
    t = np.linspace(0.0, 2 * np.pi, n_vertices, endpoint=False)
    r = _rho(t, c2, p2, c3, p3)
    px, py = x0 + a * r * np.cos(t), y0 + b * r * np.sin(t)
    xmin, xmax = px.min(), px.max()
    # vertical extent at x: the outline is convex, so the vertices from the leftmost to the rightmost
    # one (either way round) are two chains monotone in x; interpolate both
    i0, i1 = int(np.argmin(px)), int(np.argmax(px))
    n = px.size
    ia = (i0 + np.arange((i1 - i0) % n + 1)) % n
    ib = (i1 + np.arange((i0 - i1) % n + 1)) % n
    xs = np.linspace(xmin, xmax, n_x)[1:-1]
    ya = np.interp(xs, px[ia], py[ia])
    yb = np.interp(xs, px[ib][::-1], py[ib][::-1])
    ext = np.abs(ya - yb)
    w = xmax - xmin
    central = (xs >= xmin + w / 3) & (xs <= xmin + 2 * w / 3)
    slope = np.abs(np.gradient(ext, xs))
    at_max = np.abs(xs - xs[np.argmax(ext)]) <= near
    return {"csa_mm2": float(area), "csa_cm2": float(area / 100.0), "mt_mm": float(np.median(ext[central])),
            "mt_max_mm": float(ext.max()), "width_mm": float(w), "x_min_mm": float(xmin), "x_max_mm": float(xmax),
            "max_slope_central": float(slope[central].max()), "max_slope_at_max": float(slope[at_max].max())}


def _fft_blur(field_, sig_r, sig_c):
    """Gaussian blur (sigmas in pixels) by FFT, periodic; the image has margins where it wraps."""
    fr = np.fft.fftfreq(field_.shape[0])[:, None]
    fc = np.fft.fftfreq(field_.shape[1])[None, :]
    g = np.exp(-2 * (np.pi ** 2) * ((fr * sig_r) ** 2 + (fc * sig_c) ** 2))
    return np.fft.ifft2(np.fft.fft2(field_) * g)


def _ridge(dist, sigma):
    return np.exp(-0.5 * (dist / sigma) ** 2)


def generate(seed, rows=ROWS, cols=COLS):
    rng = np.random.default_rng(seed)
    ppm = int(rng.integers(10000, 13000, endpoint=True))  # pixels per metre, as pHYs stores it
    sp = 1000.0 / ppm
    spacing = (sp, sp)
    y, x = np.meshgrid((np.arange(rows) + 0.5) * sp, (np.arange(cols) + 0.5) * sp, indexing="ij")  # centres, mm
    depth, width = rows * sp, cols * sp

    # anatomy (mm)
    skin0 = rng.uniform(0.4, 0.7)
    skin_curve = rng.uniform(-0.6, 0.6) / (width / 2) ** 2
    xc = width / 2
    skin = skin0 + 0.9 + skin_curve * (x - xc) ** 2  # skin line centre depth
    fat = rng.uniform(3.0, 7.0)
    fascia = skin + fat + rng.uniform(-0.3, 0.3) * np.sin(2 * np.pi * x / width + rng.uniform(0, 6.3))
    a = rng.uniform(10.5, 16.0)
    a = min(a, width / 2 - 3.0)
    b = rng.uniform(6.5, 10.0)
    c2, c3 = rng.uniform(-0.04, 0.04), rng.uniform(-0.04, 0.04)
    p2, p3 = rng.uniform(0, 2 * np.pi), rng.uniform(0, 2 * np.pi)
    x0 = xc + rng.uniform(-2.0, 2.0)
    top_at_x0 = skin0 + 0.9 + skin_curve * (x0 - xc) ** 2 + fat
    # the muscle's top touches the fascia: y0 - b * (its top's rho) = fascia + 0.3
    rho_top = _rho(np.linspace(np.pi, 2 * np.pi, 721), c2, p2, c3, p3)
    y0 = top_at_x0 + 0.3 + b * rho_top.max()
    vi = rng.uniform(3.5, 7.0)  # vastus intermedius thickness under the muscle
    femur_r = rng.uniform(11.0, 15.0)
    rf_bottom = y0 + b * 1.1
    femur_top = min(rf_bottom + vi, depth - 4.0)
    femur_cy = femur_top + femur_r
    femur_cx = xc + rng.uniform(-3.0, 3.0)

    # the rectus femoris: inside test in scaled polar coordinates (star-shaped about its centre)
    u, v = (x - x0) / a, (y - y0) / b
    t = np.arctan2(v, u)
    rr = np.hypot(u, v)
    rho = _rho(t, c2, p2, c3, p3)
    inside = rr <= rho
    labels = inside.astype(np.uint8)
    # approximate distance to the outline, for the epimysium ridge: radial gap in mm
    dist_rf = (rr - rho) * np.hypot(a * np.cos(t), b * np.sin(t))

    femur_d = np.hypot(x - femur_cx, y - femur_cy)
    below_femur = (femur_d < femur_r) | ((y > femur_cy) & (np.abs(x - femur_cx) < femur_r))

    # diffuse echogenicity (scattering amplitude) per tissue, relative to the rectus femoris
    e_rf = 1.0
    e_fat = rng.uniform(0.55, 0.8)
    e_vi = rng.uniform(1.1, 1.4)
    e_vasti = rng.uniform(0.9, 1.25)
    E = np.zeros((rows, cols))
    in_fat = (y > skin) & (y < fascia)
    under_fascia = y >= fascia
    E[in_fat] = e_fat
    E[under_fascia] = e_vasti
    E[under_fascia & (y > rf_bottom - 2.0) & ~inside] = e_vi
    E[inside] = e_rf
    E[below_femur] = 0.0
    muscle = under_fascia & ~below_femur

    # specular (coherent) reflectors, in the same units: skin, fascia, epimysium, femoral cortex, the
    # "starry night" dots and short septa of the muscles, oblique connective strands in the fat
    S = rng.uniform(25, 40) * _ridge(y - skin, 0.18)
    S += rng.uniform(12, 20) * _ridge(y - fascia, 0.14)
    S += rng.uniform(6, 10) * _ridge(dist_rf, 0.16) * (y > fascia - 0.5)
    S += rng.uniform(40, 60) * _ridge(femur_d - femur_r, 0.25) * (y < femur_cy)
    nd = int(rng.integers(150, 300))
    dots = np.zeros((rows, cols))
    dots[rng.integers(0, rows, nd), rng.integers(0, cols, nd)] = rng.uniform(1.0, 3.0, nd)
    for _ in range(int(rng.integers(4, 9))):  # septa: short bright segments, mostly horizontal
        r0, c0 = int(rng.integers(0, rows)), int(rng.integers(0, cols - 40))
        ln = int(rng.integers(15, 40))
        dots[r0, c0:c0 + ln] += rng.uniform(0.5, 1.2)
    S += np.real(_fft_blur(dots, 1.0, 1.5)) * rng.uniform(25, 45) * muscle
    strands = np.zeros((rows, cols))
    for _ in range(int(rng.integers(3, 7))):
        ang = rng.uniform(-0.35, 0.35)
        yy = rng.uniform(skin0 + 1.5, skin0 + 1 + fat)
        d = (y - yy) * np.cos(ang) - (x - rng.uniform(0, width)) * np.sin(ang)
        strands += rng.uniform(3, 6) * _ridge(d, 0.12) * (rng.uniform(size=(1, cols)) > 0.25)
    S += strands * in_fat
    S[y < skin0] = 0.0

    # speckle: complex scatterers times the diffuse amplitude, through the point-spread function
    w = (rng.standard_normal((rows, cols)) + 1j * rng.standard_normal((rows, cols))) / np.sqrt(2)
    sig_ax, sig_lat = 0.11 / sp, 0.26 / sp
    diffuse = np.abs(_fft_blur(w * E, sig_ax, sig_lat))
    diffuse /= np.sqrt(np.mean(np.abs(_fft_blur(w, sig_ax, sig_lat)) ** 2))  # keep E's scale
    spec = np.real(_fft_blur(S, sig_ax * 0.8, sig_lat * 0.8))
    amp = diffuse + spec
    # shadow: little below the cortex; attenuation with partial time-gain compensation; dark gel
    shadow = (y > femur_cy - np.sqrt(np.clip(femur_r ** 2 - (x - femur_cx) ** 2, 0, None)) + 0.6) & \
             (np.abs(x - femur_cx) < femur_r * 0.98)
    amp[shadow] *= 0.03
    amp *= np.exp(-rng.uniform(0.005, 0.02) * y)
    amp[y < skin0 * 0.6] *= 0.02
    # log compression: the muscle's diffuse level sits gain_db below the top of the dynamic range
    dr = rng.uniform(50.0, 60.0)
    gain_db = rng.uniform(33.0, 39.0)
    db = 20 * np.log10(np.maximum(amp, 1e-12)) - gain_db
    img = np.clip(np.round(255.0 * (db + dr) / dr), 0, 255).astype(np.uint8)

    truth = outline_truth(x0, y0, a, b, c2, p2, c3, p3, near=sp)
    truth["bounds"] = {
        "csa_mm2": truth["width_mm"] * sp + 2 * truth["mt_max_mm"] * sp,
        "mt_mm": sp + 2 * sp * truth["max_slope_central"],
        "mt_max_mm": sp + sp * truth["max_slope_at_max"],
    }
    params = {"pixels_per_metre": ppm, "x0": x0, "y0": y0, "a": a, "b": b, "c2": c2, "p2": p2, "c3": c3, "p3": p3,
              "skin_mm": skin0, "fat_mm": fat, "vi_mm": vi, "femur_radius_mm": femur_r, "femur_top_mm": femur_top,
              "dynamic_range_db": dr}
    return UsPhantom(seed=int(seed), image=img, labels=labels, spacing=spacing, truth=truth, params=params)


def _chunk(typ, data):
    return struct.pack(">I", len(data)) + typ + data + struct.pack(">I", zlib.crc32(typ + data) & 0xFFFFFFFF)


def write_png(path, a, spacing=None):
    """An 8-bit grey PNG of a (rows, cols) uint8 array; spacing (row mm, col mm) goes into pHYs as pixels
    per metre (rounded: pass a spacing that 1000 / spacing makes an integer to keep it exact)."""
    a = np.asarray(a)
    if a.ndim != 2 or a.dtype != np.uint8:
        raise ValueError(f"write_png: need a 2-D uint8 array, got {a.dtype} {a.shape}")
    h, w = a.shape
    body = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
    if spacing is not None:
        ppm_x, ppm_y = (int(round(1000.0 / float(s))) for s in (spacing[1], spacing[0]))
        body += _chunk(b"pHYs", struct.pack(">IIB", ppm_x, ppm_y, 1))
    raw = np.concatenate([np.zeros((h, 1), np.uint8), a], axis=1).tobytes()  # filter 0 per row
    body += _chunk(b"IDAT", zlib.compress(raw, 6)) + _chunk(b"IEND", b"")
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(body)
    os.replace(tmp, path)


def write(p, out_dir):
    """DIR/us.png, DIR/labels.png (both with pHYs) and DIR/truth.json; returns the three paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, n) for n in ("us.png", "labels.png", "truth.json")]
    write_png(paths[0], p.image, p.spacing)
    write_png(paths[1], p.labels, p.spacing)
    doc = {"seed": p.seed, "rows": int(p.image.shape[0]), "cols": int(p.image.shape[1]),
           "pixel_spacing_mm": list(p.spacing), "labels": {str(k): v for k, v in LABELS.items()},
           "truth": p.truth, "params": p.params,
           "note": "truth: the continuous outline (docs/measure.md definitions); bounds: the most a pixel "
                   "mask of it can differ (sarco/us_phantom.py)"}
    with open(paths[2], "w") as f:
        json.dump(doc, f, indent=2)
    return paths


def _main(argv=None):
    import argparse

    ap = argparse.ArgumentParser(prog="python3 -m sarco.us_phantom", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=HELD_OUT)
    ap.add_argument("--out", required=True, help="output folder: us.png, labels.png, truth.json")
    args = ap.parse_args(argv)
    p = generate(args.seed)
    paths = write(p, args.out)
    t = p.truth
    print(f"seed {p.seed}: {p.image.shape[0]} x {p.image.shape[1]} pixels of {p.spacing[0]:.5f} mm; rectus femoris "
          f"CSA {t['csa_mm2']:.2f} mm2, MT {t['mt_mm']:.3f} mm -> {', '.join(paths)}")


if __name__ == "__main__":
    _main()
