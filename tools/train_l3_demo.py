#!/usr/bin/env python3
"""Trains the demo L3 model, a small 2-D UNETR, on synthetic L3 slices (python/sarco/l3_phantom.py)
with MONAI on the CPU, converts it with sarco.convert and records its held-out scores. Needs torch +
MONAI (the reference environment):

    /opt/refenv/bin/python tools/train_l3_demo.py               # about 20 minutes on one core
    /opt/refenv/bin/python tools/train_l3_demo.py --steps 3000  # a fixed number of steps instead

Writes weights/demo_l3_unetr.safetensors (its sarco.config carries the pipeline settings below and a
"training" entry with this run's numbers). Model card: weights/README.md. It reuses the thigh demo's
MONAI preprocessing helpers (tools/train_demo.py), which handle 2-D images unchanged: HU window and
scaling, crop to foreground, resampling to the model's spacing, labels taken there through their
bilinearly resampled one-hot maps.

Training: one slice from each of N phantoms (seeds 0..N-1, native pixel spacing drawn in 0.7..1.0
mm, resampled to 2 mm), random 96 x 96 crops (batch 4), DiceCELoss, AdamW with warm-up and a cosine
schedule over the time budget, gradient clipping 1. Seeds from 1000 on are held out. One torch
thread: on 2 cores shared by about eight jobs, two OpenMP threads spent most of their time waiting
for each other (10 s a step against 0.6 s with one thread).
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from sarco import l3_phantom  # noqa: E402
import train_demo  # noqa: E402  (MONAI preprocessing helpers)

ROI = (96, 96)
KWARGS = {"in_channels": 1, "out_channels": len(l3_phantom.CLASSES), "img_size": list(ROI), "feature_size": 8,
          "hidden_size": 64, "mlp_dim": 128, "num_heads": 4, "proj_type": "conv", "norm_name": "instance",
          "conv_block": True, "res_block": True, "dropout_rate": 0.0, "spatial_dims": 2, "qkv_bias": False}
CONFIG = {
    "classes": l3_phantom.CLASSES,
    "preprocess": {"hu_window": [-250, 350], "scale_to": [0, 1], "clip": True, "gamma": None,
                   "crop_foreground": True, "crop_margin": 0, "target_spacing_mm": [2.0, 2.0], "axcodes": None},
    "inference": {"roi": list(ROI), "overlap": 0.25, "mode": "gaussian", "sigma_scale": 0.125, "sw_batch_size": 1},
    "description": "libsarco demonstration model: 2-D UNETR trained on synthetic L3 CT slices "
                   "(python/sarco/l3_phantom.py). Not a clinical model; see weights/README.md.",
}
VAL_SEEDS = [1001, 1002, 1003]
OUT = os.path.join(ROOT, "weights", "demo_l3_unetr.safetensors")


def phantom_slice(seed, spacing=None):
    """One L3 slice (nz = 1) at a native spacing drawn per seed; returns (image2d, labels2d, affine4x4, phantom)."""
    rng = np.random.default_rng([seed, 77])
    sp = float(spacing or rng.uniform(0.7, 1.0))
    shape = (int(math.ceil(380 / sp)), int(math.ceil(300 / sp)))
    p = l3_phantom.generate(seed=seed, shape=shape, spacing=(sp, sp), nz=1, ss=3, noise_hu=float(rng.uniform(4, 14)))
    return p.image[:, :, 0], p.labels[:, :, 0], p.affine, p


def prepare(seeds, log):
    data = []
    t0 = time.time()
    for s in seeds:
        img, lab, aff, _ = phantom_slice(s)
        sp, cropped, start, end = train_demo.monai_preprocess(img, aff, CONFIG)
        lm = train_demo.labels_to_model_grid(lab, cropped, start, end, cfg=CONFIG, seed=s)
        x = sp[0].numpy().astype(np.float32)
        assert x.shape == lm.shape, (x.shape, lm.shape)
        data.append((x, lm))
    log(f"prepared {len(seeds)} slices in {time.time() - t0:.0f} s; model-grid sizes "
        f"{min(d[0].shape for d in data)} .. {max(d[0].shape for d in data)}")
    return data


def train(data, steps, minutes, lr, batch, seed, log):
    import torch
    from monai.losses import DiceCELoss
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = train_demo.build_model(KWARGS)
    model.train()
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-5)
    warm, t0, step, hist = 30, time.time(), 0, []
    while True:
        frac = step / steps if steps else (time.time() - t0) / (60.0 * minutes)
        if frac >= 1.0:
            break
        cur = lr * min(1.0, (step + 1) / warm) * 0.5 * (1.0 + math.cos(math.pi * frac))
        for g in opt.param_groups:
            g["lr"] = cur
        xs, ys = [], []
        for _ in range(batch):
            img, lab = data[int(rng.integers(len(data)))]
            x, y = train_demo._crop(img, lab, rng, roi=ROI)
            if rng.random() < 0.5:  # left-right mirror: the phantom is symmetric in law, not per seed
                x, y = x[::-1].copy(), y[::-1].copy()
            xs.append(x)
            ys.append(y)
        x = torch.from_numpy(np.stack(xs)[:, None].astype(np.float32))
        y = torch.from_numpy(np.stack(ys)[:, None].astype(np.int64))
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        hist.append(loss.item())
        step += 1
        if step % 50 == 0:
            log(f"step {step:5d}  loss {np.mean(hist[-50:]):.4f}  lr {cur:.2e}  {time.time() - t0:6.0f} s")
    log(f"trained {step} steps in {time.time() - t0:.0f} s")
    model.eval()
    return model, step, time.time() - t0, hist


def scores(pred, lab, truth, px_cm2):
    out = {}
    for l, name, key in ((1, "skeletal_muscle", "muscle_compartment_cm2"), (2, "subcutaneous_fat", "sat_cm2"),
                         (3, "visceral_fat", "vat_cm2")):
        a, b = pred == l, lab == l
        area = float(a.sum() * px_cm2)
        out[name] = {"dice": float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1)), "area_cm2": area,
                     "true_cm2": truth[key], "error_percent": 100.0 * (area - truth[key]) / truth[key]}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--steps", type=int, default=0)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--phantoms", type=int, default=96)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--work", default=os.path.join(ROOT, "build-demo", "train_l3"))
    a = ap.parse_args(argv)
    import torch
    torch.set_num_threads(a.threads)
    os.makedirs(a.work, exist_ok=True)
    logf = open(os.path.join(a.work, "train.log"), "w")
    t_start = time.time()

    def log(msg):
        line = f"[{time.time() - t_start:7.1f}s] {msg}"
        print(line, flush=True)
        logf.write(line + "\n")
        logf.flush()

    import monai
    log(f"torch {torch.__version__}, monai {monai.__version__}, {a.threads} threads")
    if not 1 <= a.phantoms <= 1000:
        ap.error("--phantoms must be 1..1000 (seeds from 1000 on are held out)")
    seeds = list(range(a.phantoms))
    data = prepare(seeds, log)
    model, steps, seconds, hist = train(data, a.steps, a.minutes, a.lr, a.batch, a.seed, log)
    ckpt = os.path.join(a.work, "demo_l3_unetr.pth")
    torch.save(model.state_dict(), ckpt)
    val = {}
    for s in VAL_SEEDS:
        img, lab, aff, p = phantom_slice(s)
        pred = train_demo.monai_segment(model, img, aff, CONFIG)
        val[s] = scores(pred, lab, p.truth[0], p.spacing[0] * p.spacing[1] / 100.0)
        log(f"validation seed {s}: " + " ".join(f"{k} dice {v['dice']:.3f} err {v['error_percent']:+.2f}%"
                                                 for k, v in val[s].items()))
    dice = [v["dice"] for r in val.values() for v in r.values()]
    err = [abs(v["error_percent"]) for r in val.values() for v in r.values()]
    total = time.time() - t_start
    training = {"data": f"one slice of L3 phantom seeds 0..{a.phantoms - 1} (python/sarco/l3_phantom.py)",
                "validation_seeds": VAL_SEEDS, "steps": steps, "batch": a.batch, "lr": a.lr,
                "seconds_training": round(seconds), "seconds_total": round(total), "torch": torch.__version__,
                "monai": monai.__version__, "threads": a.threads,
                "validation_mean_dice": round(float(np.mean(dice)), 4),
                "validation_max_abs_area_error_percent": round(float(np.max(err)), 2)}
    cfg = dict(CONFIG, training=training)
    cfg_path = os.path.join(a.work, "config.json")
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=1)
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python"))
    subprocess.run([sys.executable, "-m", "sarco.convert", "--arch", "monai.UNETR", "--kwargs", json.dumps(KWARGS),
                    "--state-dict", ckpt, "--config", cfg_path, "--out", a.out], check=True, env=env)
    with open(os.path.join(a.work, "metrics.json"), "w") as f:
        json.dump({"training": training, "validation": val, "loss": hist}, f, indent=1)
    log(f"validation mean Dice {np.mean(dice):.4f}, max |area error| {np.max(err):.2f} %; wrote {a.out} "
        f"({os.path.getsize(a.out) / 1e6:.1f} MB); total {total / 60:.1f} min")


if __name__ == "__main__":
    main()
