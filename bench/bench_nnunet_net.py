#!/opt/refenv/bin/python
"""nnU-Net network forward: libsarco (Model.forward) against PyTorch on the same cores, one patch.

    /opt/refenv/bin/python bench/bench_nnunet_net.py [--threads 2] [--repeat 3]
        [--cases plain2d resenc2d plain3d resenc3d] [--backend cpu|cuda]

Builds nnU-Net's networks the way nnU-Net does (nnunetv2's get_network_from_plans on arch_kwargs shaped
like its default 2D / 3d_fullres plans and the ResEnc M preset, one input channel, 3 classes, random
weights), converts them with sarco.convert into a temporary directory, and times one patch forward each
(best of --repeat after a warm-up; torch.no_grad, eval, float32). Prints the times, the ratio
torch / sarco and the relative L2 distance of the logits. This is the network alone: the end-to-end
comparison with nnUNetPredictor (preprocessing, sliding window, mirroring, export) is a separate bench.
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
os.environ.setdefault("SARCO_LIBRARY", os.path.join(HERE, "..", "lib", "libsarco.so"))
import sarco  # noqa: E402
from sarco import convert  # noqa: E402

PLAIN = "dynamic_network_architectures.architectures.unet.PlainConvUNet"
RESENC = "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"


def kwargs(dim, feats, ks, st, per_stage, dec, resenc):
    k = {"n_stages": len(feats), "features_per_stage": feats, "conv_op": f"torch.nn.modules.conv.Conv{dim}d",
         "kernel_sizes": ks, "strides": st, "n_conv_per_stage_decoder": dec, "conv_bias": True,
         "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{dim}d", "norm_op_kwargs": {"eps": 1e-5, "affine": True},
         "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
         "nonlin_kwargs": {"inplace": True}}
    k["n_blocks_per_stage" if resenc else "n_conv_per_stage"] = per_stage
    return k


F2 = [32, 64, 128, 256, 512, 512, 512]
K3 = [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]]
S3 = [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]]
F3 = [32, 64, 128, 256, 320, 320]
CASES = {
    # nnU-Net's default 2D plan for ~256^2 images, and the ResEnc M preset's 2D network
    "plain2d": (PLAIN, kwargs(2, F2, [[3, 3]] * 7, [[1, 1]] + [[2, 2]] * 6, [2] * 7, [2] * 6, False), (1, 1, 256, 256)),
    "resenc2d": (RESENC, kwargs(2, F2, [[3, 3]] * 7, [[1, 1]] + [[2, 2]] * 6, [1, 3, 4, 6, 6, 6, 6], [1] * 6, True),
                 (1, 1, 256, 256)),
    # a 3d_fullres-like anisotropic plan on a 32 x 128 x 128 patch
    "plain3d": (PLAIN, kwargs(3, F3, K3, S3, [2] * 6, [2] * 5, False), (1, 1, 32, 128, 128)),
    "resenc3d": (RESENC, kwargs(3, F3, K3, S3, [1, 3, 4, 6, 6, 6], [1] * 5, True), (1, 1, 32, 128, 128)),
}


def best(f, repeat):
    f()  # warm-up: primitive creation, allocations
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return min(ts)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--backend", default="cpu", choices=("cpu", "cuda"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dev = "cuda" if a.backend == "cuda" else "cpu"
    print(f"threads {a.threads}, backend {a.backend}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory(prefix="bench-nnunet-") as tmp:
        for name in a.cases:
            cls, akw, shape = CASES[name]
            torch.manual_seed(0)
            net = get_network_from_plans(cls, akw, ["conv_op", "norm_op", "dropout_op", "nonlin"], shape[1], 3,
                                         deep_supervision=False).eval()
            arch = "nnunet." + cls.rsplit(".", 1)[1]
            path = os.path.join(tmp, name + ".safetensors")
            sd = {k: v.numpy() for k, v in net.state_dict().items()}
            convert.convert(arch, dict(akw, input_channels=shape[1], num_classes=3), {"network_weights": sd}, path)
            m = sarco.Model(path, backend=a.backend, threads=a.threads)
            net = net.to(dev)
            x = torch.randn(shape)
            xd = x.to(dev)

            def run_torch():
                with torch.no_grad():
                    y = net(xd)
                if dev == "cuda":
                    torch.cuda.synchronize()
                return y

            xs = x.numpy()
            t_t = best(run_torch, a.repeat)
            t_s = best(lambda: m.forward(xs), a.repeat)
            yt, ys = run_torch().cpu().numpy().astype(np.float64), m.forward(xs).astype(np.float64)
            rel = float(np.sqrt(((ys - yt) ** 2).sum() / (yt ** 2).sum()))
            print(f"{name:9s} {str(shape):22s} torch {t_t * 1e3:8.0f} ms  sarco {t_s * 1e3:8.0f} ms  "
                  f"torch/sarco {t_t / t_s:5.2f}  logits rel L2 {rel:.1e}")
            m.close()


if __name__ == "__main__":
    main()
