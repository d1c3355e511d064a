#!/opt/refenv/bin/python
"""End-to-end segmentation timing: `sarco segment` against PyTorch + MONAI doing the same work.

    /opt/refenv/bin/python bench/bench_segment.py [--cli build/sarco] [--size 256 256 120]
        [--spacing 0.98 0.98 2.0] [--hidden 768] [--classes 30] [--threads 2] [--repeat 1]
        [--backend cpu|cuda] [--device cpu|cuda] [--precision fp32 [bf16]]

Builds a UNETR with random weights (MONAI's constructor, the study's 96^3 tiles, 16^3 patches) and
writes it as a libsarco model file with the thigh pipeline in its sarco.config; makes a synthetic
thigh-like CT; then times
  sarco:  the CLI, load + preprocess + sliding window + argmax + labels back + volumes + write;
  MONAI:  LoadImage, Orientation-free ScaleIntensityRange/AdjustContrast/CropForeground/Spacing,
          sliding_window_inference(UNETR), argmax, the inverse Spacing (nearest) and uncrop, and
          nibabel save,
and reports both with the label agreement (Dice per label averaged, and the share of equal voxels).
With --precision fp32 bf16 the CLI runs once per precision and BF16's labels are compared with FP32's.
It also measures, on the same cores: the model load alone (sarco_model_load through the binding),
one bare 96^3 tile forward (sarco Model.forward) against the cost of a window inside the sliding window
(inference seconds / windows), the network's FLOPs counted exactly from its shapes (torch's
FlopCounterMode), and the machine's GEMM peak (a 4096^3 torch matmul, FP32 and BF16), and prints the
table of issue 14's targets. CPU flags are printed so numbers from different machines are not mixed.
Everything stays in a temporary directory; nothing is written to the tree.
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

# Both sides wait passively in OpenMP (the sarco CLI and package default to it; torch is given the same
# here, before it loads its OpenMP): on a shared machine spinning threads decide the result otherwise.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def write_safetensors(path, sd, config):
    header, blobs, off = {}, [], 0
    for k, v in sd.items():
        a = np.ascontiguousarray(v.detach().cpu().numpy().astype("<f4"))
        header[k] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        blobs.append(a.tobytes())
        off += a.nbytes
    header["__metadata__"] = {"format": "pt", "sarco.config": json.dumps(config)}
    hb = json.dumps(header).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)


def synthetic_thigh(size, seed=0):
    """Two thigh cross-sections (ellipses) of muscle with fat rims and femurs, along z."""
    nx, ny, nz = size
    g = np.random.default_rng(seed)
    x, y = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    sl = np.full((nx, ny), -1000.0)
    for cx in (0.3 * nx, 0.7 * nx):
        cy = 0.5 * ny
        body = ((x - cx) / (0.19 * nx)) ** 2 + ((y - cy) / (0.3 * ny)) ** 2 <= 1
        mus = ((x - cx) / (0.16 * nx)) ** 2 + ((y - cy) / (0.26 * ny)) ** 2 <= 1
        bone = ((x - cx) / (0.03 * nx)) ** 2 + ((y - cy) / (0.04 * ny)) ** 2 <= 1
        sl[body] = -100
        sl[mus] = 50
        sl[bone] = 900
    ct = np.repeat(sl[:, :, None], nz, axis=2)
    ct += g.normal(0, 20, ct.shape)
    return np.round(ct).astype(np.int16)


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return " ".join(x for x in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if x in have)
    except OSError:
        pass
    return "unknown"


def tile_and_peak(a, mpath, model, torch):
    """Model load alone, one bare 96^3 tile forward per precision, FLOPs from shapes, GEMM peaks."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
    import sarco
    from torch.utils.flop_counter import FlopCounterMode

    out = {}
    x = np.random.default_rng(0).random((1, 1, 96, 96, 96), dtype=np.float32)
    with FlopCounterMode(display=False) as fc:
        with torch.no_grad():
            model(torch.from_numpy(x))
    out["tile_gflop"] = fc.get_total_flops() / 1e9
    for prec in a.precision:
        loads = []
        for _ in range(3):
            t0 = time.perf_counter()
            m = sarco.Model(mpath, backend="cpu", threads=a.threads, precision=prec)
            loads.append(time.perf_counter() - t0)
            if _ < 2:
                m.close()
        m.forward(x)  # primitives made on the first call
        tiles = []
        for _ in range(3):
            t0 = time.perf_counter()
            m.forward(x)
            tiles.append(time.perf_counter() - t0)
        m.close()
        out[f"load_s_{prec}"] = min(loads)
        out[f"tile_s_{prec}"] = min(tiles)
        out[f"tile_gflops_{prec}"] = out["tile_gflop"] / min(tiles)
    n = 4096
    for dt, name in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        if name not in a.precision and name != "fp32":
            continue
        p = torch.randn(n, n).to(dt)
        q = torch.randn(n, n).to(dt)
        torch.mm(p, q)
        best = min((lambda t0: (torch.mm(p, q), time.perf_counter() - t0)[1])(time.perf_counter()) for _ in range(3))
        out[f"gemm_peak_gflops_{name}"] = 2 * n ** 3 / best / 1e9
    return out


def print_targets(r, a):
    m = r["monai"]["wall_s"]
    f = r.get("sarco_fp32")
    rows = []
    if "load_s_fp32" in r:
        rows.append(("model load, UNETR", f"{r['load_s_fp32']:.3f} s", "< 0.1 s"))
    if f:
        rows.append(("whole scan FP32 vs PyTorch + MONAI", f"{m / f['wall_s']:.2f}x ({f['wall_s']:.2f} s vs {m:.2f} s)",
                     ">= 2.5x"))
        w = f["timing_s"]["inference"] / max(f["windows"], 1)
        if "tile_s_fp32" in r:
            rows.append(("window in the sliding window vs bare tile",
                         f"{w:.3f} s / {r['tile_s_fp32']:.3f} s ({100 * (w / r['tile_s_fp32'] - 1):+.1f} %)", "within 5 %"))
            rows.append(("tile FP32 GFLOP/s vs GEMM peak", f"{r['tile_gflops_fp32']:.0f} / {r['gemm_peak_gflops_fp32']:.0f}"
                         f" ({100 * r['tile_gflops_fp32'] / r['gemm_peak_gflops_fp32']:.0f} %)", ">= 85 %"))
    b = r.get("sarco_bf16")
    if b:
        eq = r.get("bf16_vs_fp32", {}).get("equal_voxels")
        rows.append(("whole scan BF16 vs PyTorch + MONAI FP32", f"{m / b['wall_s']:.2f}x ({b['wall_s']:.2f} s)"
                     + (f", labels {100 * eq:.3f} % = FP32" if eq is not None else ""), ">= 5x, >= 99.9 %"))
        if "tile_s_bf16" in r:
            rows.append(("tile BF16 GFLOP/s vs BF16 GEMM peak",
                         f"{r['tile_gflops_bf16']:.0f} / {r.get('gemm_peak_gflops_bf16', float('nan')):.0f}", "-"))
    print(f"\nCPU flags: {r['cpu_flags']}; {a.threads} threads; tile {r.get('tile_gflop', 0):.1f} GFLOP")
    print(f"{'measure':<46} {'measured':<44} target")
    for k, v, t in rows:
        print(f"{k:<46} {v:<44} {t}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", default="build/sarco")
    ap.add_argument("--size", type=int, nargs=3, default=[256, 256, 120])
    ap.add_argument("--spacing", type=float, nargs=3, default=[0.98, 0.98, 2.0])
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--classes", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--backend", default="cpu", help="sarco backend: cpu, cuda or auto")
    ap.add_argument("--device", default="cpu", help="torch device for MONAI: cpu or cuda")
    ap.add_argument("--skip-monai", action="store_true")
    ap.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16", "tf32", "fp16"])
    a = ap.parse_args()

    import nibabel as nib
    import torch
    from monai.data import MetaTensor
    from monai.inferers import sliding_window_inference
    from monai.networks.nets import UNETR
    from monai.transforms import AdjustContrast, CropForeground, ScaleIntensityRange, Spacing, SpatialResample

    torch.set_num_threads(a.threads)
    tmp = tempfile.mkdtemp(prefix="bench_segment_")
    heads = 12 if a.hidden % 12 == 0 else 4
    kw = dict(in_channels=1, out_channels=a.classes, img_size=(96, 96, 96), feature_size=16, hidden_size=a.hidden,
              mlp_dim=4 * a.hidden, num_heads=heads)
    torch.manual_seed(0)
    model = UNETR(**kw).eval()
    classes = ["background"] + [f"muscle_{i}" for i in range(1, a.classes)]
    config = {"arch": "monai.UNETR", "kwargs": {**kw, "img_size": [96, 96, 96]}, "classes": classes,
              "groups": {"anterior": [1, 2, 3], "posterior": [4, 5]},
              "preprocess": {"hu_window": [-57, 164], "scale_to": [0, 1], "clip": True, "gamma": 2.0,
                             "crop_foreground": True, "target_spacing_mm": [1.5, 1.5, 2.0]},
              "inference": {"roi": [96, 96, 96], "overlap": 0.25, "mode": "gaussian", "sigma_scale": 0.125,
                            "sw_batch_size": 1}}
    mpath = os.path.join(tmp, "unetr.safetensors")
    write_safetensors(mpath, model.state_dict(), config)
    aff = np.diag(list(a.spacing) + [1.0])
    ct = synthetic_thigh(a.size)
    cpath = os.path.join(tmp, "ct.nii.gz")
    nib.save(nib.Nifti1Image(ct, aff), cpath)
    print(f"model: UNETR hidden {a.hidden}, {a.classes} classes, "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params; CT {tuple(a.size)} at {a.spacing} mm",
          file=sys.stderr)

    # ---- sarco, once per precision
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    result = {"cpu_flags": cpu_flags(), "threads": a.threads}
    labels = {}
    for prec in a.precision:
        out = os.path.join(tmp, f"sarco_labels_{prec}.nii.gz")
        sarco_times, rep = [], None
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            r = subprocess.run([a.cli, "segment", "--model", mpath, "--input", cpath, "--output", out, "--backend",
                                a.backend, "--precision", prec], capture_output=True, text=True, env=env)
            t = time.perf_counter() - t0
            if r.returncode != 0:
                sys.exit(f"sarco segment --precision {prec} failed ({r.returncode}): {r.stderr}")
            rep = json.loads(r.stdout)
            sarco_times.append(t)
        labels[prec] = np.asarray(nib.load(out).dataobj).astype(np.int64)
        result[f"sarco_{prec}"] = {"wall_s": min(sarco_times), "timing_s": rep["timing_s"],
                                   "windows": rep["settings"]["windows"], "model_dims": rep["preprocess"]["model_dims"],
                                   "slab_bytes": rep["preprocess"]["slab_bytes"], "backend": rep["settings"]["backend"]}
    sl = labels[a.precision[0]]
    if "bf16" in labels and "fp32" in labels:
        x, y = labels["fp32"], labels["bf16"]
        d = [2 * ((x == k) & (y == k)).sum() / ((x == k).sum() + (y == k).sum()) for k in range(1, a.classes)
             if (x == k).sum() + (y == k).sum()]
        result["bf16_vs_fp32"] = {"equal_voxels": float((x == y).mean()), "min_dice": float(min(d)) if d else None}

    # ---- load, bare tile and the efficiency figure, on the same cores
    if a.backend == "cpu":
        result.update(tile_and_peak(a, mpath, model, torch))
    # ---- MONAI
    if not a.skip_monai:
        dev = torch.device(a.device)
        model = model.to(dev)
        monai_times = []
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            im = nib.load(cpath)
            img = MetaTensor(torch.from_numpy(np.asarray(im.dataobj).astype(np.float32))[None],
                             affine=torch.from_numpy(im.affine))
            t_load = time.perf_counter()
            s = ScaleIntensityRange(-57, 164, 0.0, 1.0, clip=True)(img)
            s = AdjustContrast(2.0)(s)
            cropped, start, end = CropForeground(return_coords=True)(s)
            sp = Spacing(pixdim=(1.5, 1.5, 2.0), mode="bilinear")(cropped)
            t_pre = time.perf_counter()
            with torch.no_grad():
                logits = sliding_window_inference(sp[None].as_tensor().to(dev), (96, 96, 96), 1, model,
                                                  overlap=0.25, mode="gaussian")
                lab = torch.argmax(logits, dim=1)[0].cpu()
            t_inf = time.perf_counter()
            lm = MetaTensor(lab[None].double(), affine=sp.affine)
            back = SpatialResample(mode="nearest", padding_mode="border", align_corners=False)(
                lm, dst_affine=cropped.affine, spatial_size=cropped.shape[1:])[0].numpy()
            full = np.zeros(ct.shape, np.uint8)
            full[start[0]:end[0], start[1]:end[1], start[2]:end[2]] = np.round(back).astype(np.uint8)
            nib.save(nib.Nifti1Image(full, im.affine), os.path.join(tmp, "monai_labels.nii.gz"))
            t_end = time.perf_counter()
            monai_times.append((t_end - t0, t_load - t0, t_pre - t_load, t_inf - t_pre, t_end - t_inf))
        best = min(monai_times)
        result["monai"] = {"wall_s": best[0], "timing_s": {"load": best[1], "preprocess": best[2],
                                                           "inference": best[3], "post_and_write": best[4]},
                           "device": a.device}
        ml = full.astype(np.int64)  # compared with the first --precision's labels
        dice = []
        for k in range(1, a.classes):
            p, q = sl == k, ml == k
            if p.sum() + q.sum():
                dice.append(2 * (p & q).sum() / (p.sum() + q.sum()))
        result["agreement"] = {"equal_voxels": float((sl == ml).mean()),
                               "mean_dice_present_labels": float(np.mean(dice)) if dice else None}
    print(json.dumps(result, indent=1))
    if "monai" in result:
        print_targets(result, a)


if __name__ == "__main__":
    main()
