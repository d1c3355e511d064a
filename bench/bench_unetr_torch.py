"""One 96^3 tile through MONAI's UNETR in PyTorch, against libsarco's CPU backend.

    /opt/refenv/bin/python bench/bench_unetr_torch.py [--bench-bin build/bench/bench_unetr]
                                                      [--repeats 3] [--threads 2]

Builds the thigh study's UNETR (in 1, out 30, img 96, feature 16, hidden 768, mlp 3072, heads 12)
with seeded random weights, writes it as a libsarco model file under /tmp (never committed, about
370 MB), times PyTorch's forward (torch.set_num_threads, inference_mode; first run and best of
--repeats), runs the C bench (bench/bench_unetr.c) on the same file and input, compares the two
outputs (relative L2, max abs) and prints the time ratio and both peak RSS figures.
"""
import argparse
import json
import os
import re
import resource
import struct
import subprocess
import sys
import time

import numpy as np
import torch
from monai.networks.nets import UNETR

KWARGS = dict(in_channels=1, out_channels=30, img_size=[96, 96, 96], feature_size=16, hidden_size=768,
              mlp_dim=3072, num_heads=12)


def write_model(path, model):
    head = {"__metadata__": {"format": "pt",
                             "sarco.config": json.dumps({"arch": "monai.UNETR", "kwargs": KWARGS})}}
    blobs, off = [], 0
    for k, v in model.state_dict().items():
        a = np.ascontiguousarray(v.detach().cpu().numpy())
        dt = {np.dtype("float32"): "F32", np.dtype("int64"): "I64"}[a.dtype]
        raw = a.astype(a.dtype.newbyteorder("<")).tobytes()
        head[k] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        blobs.append(raw)
    text = json.dumps(head, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--bench-bin", default=os.path.join(root, "build", "bench", "bench_unetr"))
    ap.add_argument("--model", default="/tmp/sarco_bench_unetr96.safetensors")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-c", action="store_true", help="time PyTorch only")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = UNETR(**KWARGS).eval()
    nparams = sum(p.numel() for p in model.parameters())
    if not os.path.exists(a.model):
        write_model(a.model, model)
        print(f"wrote {a.model} ({os.path.getsize(a.model) / 2**20:.0f} MiB, {nparams / 1e6:.1f}M parameters)")
    else:  # the file must hold these very weights: same seed, same MONAI
        print(f"using {a.model} (delete it to rewrite)")
    x = torch.rand((1, 1, 96, 96, 96), generator=torch.Generator().manual_seed(1))
    in_path, out_path = a.model + ".in.bin", a.model + ".out.bin"
    x.numpy().astype("<f4").tofile(in_path)

    with torch.inference_mode():
        t = time.perf_counter()
        y = model(x)
        first = (time.perf_counter() - t) * 1e3
        times = []
        for _ in range(a.repeats):
            t = time.perf_counter()
            y = model(x)
            times.append((time.perf_counter() - t) * 1e3)
    torch_ms = min(times)
    torch_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"pytorch {torch.__version__} + MONAI, {a.threads} threads: first {first:.0f} ms, best {torch_ms:.1f} ms "
          f"(mean {sum(times) / len(times):.1f} over {a.repeats}), peak RSS {torch_rss:.0f} MiB (whole process, "
          f"model file writing included)")
    if a.skip_c:
        return 0
    if not os.path.exists(a.bench_bin):
        print(f"no {a.bench_bin}: build bench/bench_unetr.c first (or pass --bench-bin)", file=sys.stderr)
        return 1
    env = dict(os.environ, SARCO_THREADS=str(a.threads))
    r = subprocess.run([a.bench_bin, a.model, str(a.repeats), "--input", in_path, "--output", out_path],
                       capture_output=True, text=True, env=env)
    sys.stdout.write(r.stdout)
    if r.returncode != 0:
        sys.stderr.write(r.stderr)
        return 1
    c_ms = float(re.search(r"best_ms=([0-9.]+)", r.stdout).group(1))
    yc = np.fromfile(out_path, dtype="<f4").reshape(y.shape)
    yt = y.numpy().astype(np.float64)
    rel = np.linalg.norm(yc - yt) / np.linalg.norm(yt)
    print(f"libsarco vs PyTorch output: rel L2 {rel:.2e}, max abs {np.abs(yc - yt).max():.2e}")
    print(f"time ratio libsarco / PyTorch: {c_ms / torch_ms:.2f} ({c_ms:.0f} ms vs {torch_ms:.0f} ms)")
    os.remove(in_path)
    os.remove(out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
