"""Times bench/bench_conv.c's shapes in PyTorch (CPU, 2 threads, channels-last where it helps) and, when
the C benchmark is built, runs it too and prints the ratios (PyTorch time / libsarco time).

    /opt/refenv/bin/python bench/bench_conv_torch.py [--bench build-x/bench/bench_conv] [--repeat R] [--rounds K]

Each side reports its best of R timed runs after a warm-up; with --rounds K the whole comparison runs K
times alternating the two sides and keeps each shape's best (the machine is shared: noise only ever
adds time).
"""
import argparse
import json
import os
import subprocess
import time

import torch
import torch.nn.functional as F

SHAPES = [
    # name, kind, (cin, cout, groups, k, stride, pad, spatial) or linear (m, k, n)
    ("conv3d_k3_96^3_16->16", "conv", (16, 16, 1, 3, 1, 1, (96, 96, 96))),
    ("patch_embed_k16s16_96^3_1->768", "conv", (1, 768, 1, 16, 16, 0, (96, 96, 96))),
    ("conv2d_k3_224^2_64->64", "conv", (64, 64, 1, 3, 1, 1, (224, 224))),
    ("linear_216x768->3072", "linear", (216, 768, 3072)),
    ("deconv3d_k2s2_6^3_768->64", "deconv", (768, 64, 1, 2, 2, 0, (6, 6, 6))),
    ("dwconv2d_k7_56^2_96", "conv", (96, 96, 96, 7, 1, 3, (56, 56))),
]


def best_time(fn, repeat):
    """Best wall time of `repeat` runs after a warm-up, and the process CPU time of that run."""
    fn()  # warm-up (and oneDNN primitive creation inside PyTorch)
    best, best_cpu = float("inf"), 0.0
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        if dt < best:
            best, best_cpu = dt, dc
    return best, best_cpu


def torch_times(repeat):
    out = {}
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, kind, p in SHAPES:
            if kind == "linear":
                m, k, n = p
                x, w, b = torch.rand(m, k, generator=g), torch.rand(n, k, generator=g), torch.rand(n, generator=g)
                t, c = best_time(lambda: F.linear(x, w, b), repeat)
                macs = m * k * n
            else:
                cin, cout, groups, k, s, pad, sp = p
                nd = len(sp)
                fmt = torch.channels_last_3d if nd == 3 else torch.channels_last
                x = torch.rand(1, cin, *sp, generator=g).contiguous(memory_format=fmt)
                if kind == "conv":
                    w = torch.rand(cout, cin // groups, *([k] * nd), generator=g).contiguous(memory_format=fmt)
                    f = F.conv3d if nd == 3 else F.conv2d
                    fn = lambda: f(x, w, torch.zeros(cout), stride=s, padding=pad, groups=groups)
                    o = fn()
                    macs = o.numel() * (cin // groups) * k**nd
                else:
                    w = torch.rand(cin, cout // groups, *([k] * nd), generator=g).contiguous(memory_format=fmt)
                    f = F.conv_transpose3d if nd == 3 else F.conv_transpose2d
                    fn = lambda: f(x, w, torch.zeros(cout), stride=s, padding=pad, groups=groups)
                    macs = x.numel() * (cout // groups) * k**nd
                t, c = best_time(fn, repeat)
            out[name] = {"ms": t * 1e3, "cpu_ms": c * 1e3, "gflops": 2 * macs / t * 1e-9}
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", default=None, help="path of the built bench_conv (default: search build*/bench)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    bench = a.bench
    if bench is None:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        for d in sorted(os.listdir(root)):
            p = os.path.join(root, d, "bench", "bench_conv")
            if d.startswith("build") and os.path.exists(p):
                bench = p
                break
    best_t, best_c, impl = {}, {}, {}
    for _ in range(a.rounds):
        for k, v in torch_times(a.repeat).items():
            if k not in best_t or v["ms"] < best_t[k]["ms"]:
                best_t[k] = v
        if bench:
            r = subprocess.run([bench, "--json", "--repeat", str(a.repeat), "--threads", str(a.threads)],
                               capture_output=True, text=True, check=True)
            for e in json.loads(r.stdout):
                impl[e["name"]] = e["impl"]
                if e["name"] not in best_c or e["ms"] < best_c[e["name"]]["ms"]:
                    best_c[e["name"]] = e
    print(f"torch {torch.__version__}, {a.threads} threads, best of {a.repeat} x {a.rounds} rounds")
    print("(wall ms of the best run; cpu = CPU ms all threads used in it: cpu < threads x wall = waiting for cores)")
    print(f"{'shape':32s} {'torch ms':>9s} {'cpu':>8s} {'GFLOP/s':>8s} {'sarco ms':>9s} {'cpu':>8s} {'GFLOP/s':>8s}"
          f" {'torch/sarco':>11s}  impl")
    for name, _, _ in SHAPES:
        t = best_t[name]
        c = best_c.get(name)
        if c:
            print(f"{name:32s} {t['ms']:9.2f} {t['cpu_ms']:8.1f} {t['gflops']:8.1f} {c['ms']:9.2f} {c['cpu_ms']:8.1f} "
                  f"{c['gflops']:8.1f} {t['ms'] / c['ms']:11.2f}  {impl[name]}")
        else:
            print(f"{name:32s} {t['ms']:9.2f} {t['cpu_ms']:8.1f} {t['gflops']:8.1f}")


if __name__ == "__main__":
    main()
