"""torchvision classifiers against libsarco's CPU backend, FP32, same threads, one run.

    /opt/refenv/bin/python bench/bench_classifier.py [--bench-bin build/bench/bench_classifier]
        [--threads 2] [--batches 1 32] [--size 224] [--repeats 2] [--archs resnet50 vgg19 ...]

Per arch: a torchvision model with random weights (num_classes 1, eval), converted with sarco.convert
into /tmp (never committed); torchvision's forward timed under inference_mode with
torch.set_num_threads(threads) (first run discarded, best of --repeats); the C driver
(bench/bench_classifier.c, SARCO_THREADS=threads) on the same file and input; the logits compared
(relative L2); GFLOP/s from torch.utils.flop_counter (2 x multiply-adds of convs and linears).
Prints one table: ms, GFLOP/s and the ratio torch / libsarco (> 1: libsarco faster).
"""
import argparse
import os
import re
import subprocess
import sys
import time

import numpy as np
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
from sarco import convert  # noqa: E402

ARCHS = ["resnet50", "vgg19", "vgg19_bn", "densenet121", "efficientnet_b0", "convnext_tiny", "swin_t"]


def flops(model, x):
    with FlopCounterMode(display=False) as fc, torch.inference_mode():
        model(x)
    return fc.get_total_flops()


def time_torch(model, x, repeats):
    with torch.inference_mode():
        model(x)  # warm-up
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            y = model(x)
            best = min(best, time.perf_counter() - t)
    return best * 1e3, y.numpy()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bench-bin", default=os.path.join(ROOT, "build", "bench", "bench_classifier"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--archs", nargs="+", default=ARCHS)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    env = dict(os.environ, SARCO_THREADS=str(a.threads))
    rows = []
    for arch in a.archs:
        model = getattr(torchvision.models, arch)(num_classes=1).eval()
        path = f"/tmp/bench_classifier_{arch}.safetensors"
        convert.convert(f"torchvision.{arch}", {}, {k: v.numpy() for k, v in model.state_dict().items()}, path)
        for n in a.batches:
            x = torch.rand(n, 3, a.size, a.size)
            gf = flops(model, x[:1]) * n / 1e9
            t_ms, ref = time_torch(model, x, a.repeats)
            xin, yout = f"/tmp/bench_classifier_{arch}_x.bin", f"/tmp/bench_classifier_{arch}_y.bin"
            x.numpy().astype("<f4").tofile(xin)
            out = subprocess.run([a.bench_bin, path, str(n), str(a.size), str(a.size), str(a.repeats),
                                  "--input", xin, "--output", yout], env=env, capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"{arch}: {out.stderr}")
            c_ms = float(re.search(r"best_ms=([0-9.]+)", out.stdout).group(1))
            got = np.fromfile(yout, "<f4").reshape(ref.shape)
            rel = float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
            rows.append((arch, n, gf, t_ms, c_ms, rel))
            print(f"{arch:16s} N {n:2d}: torch {t_ms:9.1f} ms ({gf / t_ms * 1e3:6.1f} GFLOP/s)  libsarco {c_ms:9.1f} ms "
                  f"({gf / c_ms * 1e3:6.1f} GFLOP/s)  ratio {t_ms / c_ms:5.2f}  rel L2 {rel:.1e}", flush=True)
            os.remove(xin)
            os.remove(yout)
        os.remove(path)
    print(f"\ntorch {torch.__version__}, torchvision {torchvision.__version__}, threads {a.threads}, "
          f"{a.size}x{a.size}, FP32")
    print("| arch | batch | GFLOP | torch ms | libsarco ms | torch GFLOP/s | libsarco GFLOP/s | ratio torch/libsarco |")
    print("|---|---|---|---|---|---|---|---|")
    for arch, n, gf, t, c, rel in rows:
        print(f"| {arch} | {n} | {gf:.1f} | {t:.0f} | {c:.0f} | {gf / t * 1e3:.1f} | {gf / c * 1e3:.1f} | {t / c:.2f} |")


if __name__ == "__main__":
    main()
