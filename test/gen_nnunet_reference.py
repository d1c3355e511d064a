"""Reference outputs of dynamic-network-architectures' PlainConvUNet and ResidualEncoderUNet for
test/test_nnunet.c, and a small fake nnU-Net results folder for test/python/test_nnunet_convert.py.

    /opt/refenv/bin/python test/gen_nnunet_reference.py [OUT_DIR]   (torch, nnunetv2, dynamic-network-architectures)

Each variant is built the way nnU-Net builds it (nnunetv2's get_network_from_plans on plans-style
arch_kwargs), gets random non-trivial norm affines and biases (batch-norm variants: running
statistics from a train-mode pass, then perturbed), and is written into test/data/nnunet/:
  <name>.safetensors   through sarco.convert (from an nnU-Net style checkpoint dict, duplicates and all)
  <name>_in.bin        a seeded input, float32 little-endian, PyTorch layout
  <name>_out.bin       the network's output (deep supervision off), computed in float64, stored as float32
  manifest.json        shapes, file names, kwargs, and how far torch's own float32 run is from float64
Weights are made float16-representable and stored as float16 (small files; the reference uses
exactly those values, so the comparison stays an FP32-exact one).

results/Dataset999_Fake/nnUNetTrainer__nnUNetPlans__2d_small/: plans.json (configuration 2d_small
inherits_from 2d), dataset.json, fold_0 and fold_1 checkpoint_final.pth saved with torch.save exactly
as nnUNetTrainer.save_checkpoint lays them out, and crossval_results_folds_0_1/postprocessing.pkl
(pickled by reference to nnU-Net's own function, as determine_postprocessing does) and .json.
fake_2folds.safetensors is that folder converted (python3 -m sarco.convert --nnunet), with
fake_in.bin and each fold's output fake_fold<i>_out.bin.
"""
import json
import os
import shutil
import sys

import numpy as np
import torch
from batchgenerators.utilities.file_and_folder_operations import save_pickle
import dynamic_network_architectures
from nnunetv2.postprocessing.remove_connected_components import remove_all_but_largest_component_from_segmentation
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
from sarco import convert  # noqa: E402

OUT = os.path.join(HERE, "data", "nnunet")
REQ_IMPORT = ["conv_op", "norm_op", "dropout_op", "nonlin"]
PLAIN = "dynamic_network_architectures.architectures.unet.PlainConvUNet"
RESENC = "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"
C2, C3 = "torch.nn.modules.conv.Conv2d", "torch.nn.modules.conv.Conv3d"
IN2, IN3 = "torch.nn.modules.instancenorm.InstanceNorm2d", "torch.nn.modules.instancenorm.InstanceNorm3d"
BN2 = "torch.nn.modules.batchnorm.BatchNorm2d"
LRELU, RELU = "torch.nn.LeakyReLU", "torch.nn.ReLU"


def plain_kwargs(conv, n, feats, ks, st, nconv, ndec, norm, nkw, nonlin, lkw, bias=True, dropout=None):
    return {"n_stages": n, "features_per_stage": feats, "conv_op": conv, "kernel_sizes": ks, "strides": st,
            "n_conv_per_stage": nconv, "n_conv_per_stage_decoder": ndec, "conv_bias": bias, "norm_op": norm,
            "norm_op_kwargs": nkw, "dropout_op": dropout, "dropout_op_kwargs": {"p": 0.2} if dropout else None,
            "nonlin": nonlin, "nonlin_kwargs": lkw}


def resenc_kwargs(conv, n, feats, ks, st, nblocks, ndec, norm, nkw, nonlin, lkw, bias=True, stem=None):
    k = plain_kwargs(conv, n, feats, ks, st, None, ndec, norm, nkw, nonlin, lkw, bias)
    del k["n_conv_per_stage"]
    k["n_blocks_per_stage"] = nblocks
    if stem is not None:
        k["stem_channels"] = stem
    return k


# name, network class, arch_kwargs (as plans.json has them), input shape, classes, seed
VARIANTS = [
    # (a) nnU-Net's default 2D plan shape, smaller: 5 stages, 2 convs per stage, batch of 2
    ("a_plain2d_5stages", PLAIN,
     plain_kwargs(C2, 5, [4, 8, 16, 32, 32], [[3, 3]] * 5, [[1, 1]] + [[2, 2]] * 4, [2] * 5, [2] * 4,
                  IN2, {"eps": 1e-5, "affine": True}, LRELU, {"inplace": True}),
     (2, 1, 32, 48), 3, 1),
    # (b) 3D with anisotropic kernels (1,3,3) and strides (1,2,2), eps 1e-3, slope 0.05, 1..3 convs per stage
    ("b_plain3d_aniso", PLAIN,
     plain_kwargs(C3, 4, [4, 8, 12, 16], [[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 3, 3]],
                  [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]], [3, 2, 2, 1], [2, 3, 1],
                  IN3, {"eps": 1e-3, "affine": True}, LRELU, {"negative_slope": 0.05, "inplace": True}),
     (1, 2, 8, 16, 16), 2, 2),
    # (c) 2D ResEnc M preset shape (blocks 1,3,4,6,6; one decoder conv per stage), 3 input channels
    ("c_resenc2d_m", RESENC,
     resenc_kwargs(C2, 5, [4, 8, 16, 32, 32], [[3, 3]] * 5, [[1, 1]] + [[2, 2]] * 4, [1, 3, 4, 6, 6], [1] * 4,
                   IN2, {"eps": 1e-5, "affine": True}, LRELU, {"inplace": True}),
     (1, 3, 32, 32), 4, 3),
    # (d) 3D ResEnc, anisotropic, stem of 6 channels (a projection without a pool) and a pool-only skip
    ("d_resenc3d_aniso", RESENC,
     resenc_kwargs(C3, 4, [4, 8, 16, 16], [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]],
                   [[1, 1, 1], [1, 2, 2], [2, 2, 2], [1, 2, 2]], [1, 3, 4, 6], [1, 1, 1],
                   IN3, {"eps": 1e-5, "affine": True}, LRELU, {"inplace": True}, stem=6),
     (1, 1, 8, 16, 16), 3, 4),
    # (e) BatchNorm (folded at load) + ReLU, no conv bias, a Dropout2d (a no-op in eval that shifts all_modules)
    ("e_plain2d_bn_relu_nobias", PLAIN,
     plain_kwargs(C2, 4, [4, 8, 16, 16], [[3, 3]] * 4, [[1, 1]] + [[2, 2]] * 3, [2] * 4, [2] * 3,
                  BN2, {"eps": 1e-5, "affine": True}, RELU, {"inplace": True}, bias=False,
                  dropout="torch.nn.modules.dropout.Dropout2d"),
     (1, 1, 32, 32), 3, 5),
    # (f) ResEnc with BatchNorm + ReLU, no bias: the residual add goes through the folded conv; a strided
    # first stage (output at half the input size) and a (1, 2) stride
    ("f_resenc2d_bn_relu", RESENC,
     resenc_kwargs(C2, 4, [4, 8, 16, 16], [[3, 3]] * 4, [[2, 2], [2, 2], [2, 2], [1, 2]], [1, 2, 2, 2], [1] * 3,
                   BN2, {"eps": 1e-5, "affine": True}, RELU, {"inplace": True}, bias=False),
     (1, 2, 16, 32), 2, 6),
]


def build(cls, arch_kwargs, cin, classes, seed):
    torch.manual_seed(seed)
    net = get_network_from_plans(cls, arch_kwargs, REQ_IMPORT, cin, classes, allow_init=True, deep_supervision=True)
    return net


def perturb(net, in_shape, gen):
    """Non-trivial values for what initialises to 0/1 (norm affines, biases, the zeroed last norm of
    ResEnc blocks), batch-norm statistics from a train-mode pass, then perturbed; then every weight
    rounded to a float16 value."""
    with torch.no_grad():
        for name, p in net.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if ".norm." in name and leaf == "weight":
                p.copy_(0.5 + torch.rand(p.shape, generator=gen))
            elif leaf == "bias":
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))
        bns = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        if bns:
            for m in bns:
                m.reset_running_stats()
                m.momentum = None  # cumulative average
            net.train()
            for m in net.modules():  # dropout off: a dropped channel would leave a near-zero variance
                if isinstance(m, torch.nn.modules.dropout._DropoutNd):
                    m.eval()
            for _ in range(2):
                net(torch.randn((4,) + tuple(in_shape[1:]), generator=gen))
            for m in bns:
                m.running_var.mul_(0.8 + 0.45 * torch.rand(m.running_var.shape, generator=gen))
                m.running_mean.add_(0.1 * torch.randn(m.running_mean.shape, generator=gen) * m.running_var.sqrt())
        net.eval()
        for v in net.state_dict().values():
            if v.is_floating_point():
                v.copy_(v.half().float())


def forward(net, x):
    """Deep supervision off: only the last seg layer's output."""
    net.decoder.deep_supervision = False
    with torch.no_grad():
        return net(x)


def errors(a, b):
    d = a.astype(np.float64) - b.astype(np.float64)
    return float(np.abs(d).max()), float(np.sqrt((d ** 2).sum() / max((b.astype(np.float64) ** 2).sum(), 1e-300)))


def checkpoint(net, arch_kwargs, conf, fold, plans=None, dataset=None, mirror=(0, 1)):
    """What nnUNetTrainer.save_checkpoint writes (optimizer state of a real SGD step included)."""
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.99, nesterov=True)
    return {
        "network_weights": net.state_dict(),
        "optimizer_state": opt.state_dict(),
        "grad_scaler_state": None,
        "logging": {"mean_fg_dice": [np.float64(0.5)], "ema_fg_dice": [np.float64(0.5)],
                    "train_losses": [np.float32(-0.3)], "lrs": [0.01], "epoch_start_timestamps": [1.7e9]},
        "_best_ema": np.float64(0.5),
        "current_epoch": 1,
        "init_args": {"plans": plans or {}, "configuration": conf, "fold": fold, "dataset_json": dataset or {},
                      "device": torch.device("cpu")},
        "trainer_name": "nnUNetTrainer",
        "inference_allowed_mirroring_axes": mirror,
    }


def half_numpy(sd):
    return {k: (v.numpy().astype(np.float16) if v.is_floating_point() else v.numpy()) for k, v in sd.items()}


def variants(out, manifest):
    for name, cls, akw, in_shape, classes, seed in VARIANTS:
        net = build(cls, akw, in_shape[1], classes, seed)
        gen = torch.Generator().manual_seed(1000 + seed)
        perturb(net, in_shape, gen)
        kwargs = dict(akw, input_channels=in_shape[1], num_classes=classes, deep_supervision=False)
        arch = "nnunet.PlainConvUNet" if cls == PLAIN else "nnunet.ResidualEncoderUNet"
        ck = checkpoint(net, akw, "x", 0)
        ck["network_weights"] = half_numpy(ck["network_weights"])
        convert.convert(arch, kwargs, ck, os.path.join(out, name + ".safetensors"))
        x = torch.randn(in_shape, generator=torch.Generator().manual_seed(2000 + seed))
        y32 = forward(net, x).numpy()
        y64 = forward(net.double(), x.double()).numpy()
        x.numpy().astype("<f4").tofile(os.path.join(out, name + "_in.bin"))
        y64.astype("<f4").tofile(os.path.join(out, name + "_out.bin"))
        mx, rel = errors(y32, y64)
        manifest["variants"].append({
            "name": name, "arch": arch, "model": name + ".safetensors", "input": name + "_in.bin",
            "output": name + "_out.bin", "input_shape": list(in_shape), "output_shape": list(y64.shape),
            "torch_fp32_vs_fp64": {"max_abs": mx, "rel_l2": rel},
            "output_rms": float(np.sqrt((y64 ** 2).mean())), "output_max_abs": float(np.abs(y64).max()),
        })
        print(f"{name}: in {in_shape} out {tuple(y64.shape)} torch fp32 vs fp64 max {mx:.2e} rel {rel:.2e}",
              file=sys.stderr)


FAKE_ARCH = plain_kwargs(C2, 3, [4, 8, 16], [[3, 3]] * 3, [[1, 1], [2, 2], [2, 2]], [2, 2, 2], [1, 1],
                         IN2, {"eps": 1e-5, "affine": True}, LRELU, {"inplace": True})


def fake_results(out, manifest):
    """A minimal nnU-Net results folder with two folds."""
    root = os.path.join(out, "results", "Dataset999_Fake", "nnUNetTrainer__nnUNetPlans__2d_small")
    if os.path.isdir(os.path.join(out, "results")):
        shutil.rmtree(os.path.join(out, "results"))
    os.makedirs(root)
    base = {
        "data_identifier": "nnUNetPlans_2d", "preprocessor_name": "DefaultPreprocessor", "batch_size": 12,
        "patch_size": [64, 64], "median_image_size_in_voxels": [64.0, 80.0], "spacing": [0.08, 0.08],
        "normalization_schemes": ["ZScoreNormalization"], "use_mask_for_norm": [False],
        "resampling_fn_data": "resample_data_or_seg_to_shape",
        "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
        "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
        "architecture": {"network_class_name": PLAIN,
                         "arch_kwargs": plain_kwargs(C2, 4, [4, 8, 16, 32], [[3, 3]] * 4, [[1, 1]] + [[2, 2]] * 3,
                                                     [2] * 4, [1] * 3, IN2, {"eps": 1e-5, "affine": True}, LRELU,
                                                     {"inplace": True}),
                         "_kw_requires_import": REQ_IMPORT},
        "batch_dice": True,
    }
    small = {"inherits_from": "2d", "patch_size": [32, 32],
             "architecture": {"network_class_name": PLAIN, "arch_kwargs": FAKE_ARCH,
                              "_kw_requires_import": REQ_IMPORT}}
    plans = {
        "dataset_name": "Dataset999_Fake", "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [0.08, 0.08], "original_median_shape_after_transp": [64, 80],
        "image_reader_writer": "NaturalImage2DIO", "transpose_forward": [0, 1], "transpose_backward": [0, 1],
        "configurations": {"2d": base, "2d_small": small},
        "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {"0": {
            "max": 255.0, "mean": 101.5, "median": 99.0, "min": 0.0, "percentile_00_5": 3.0,
            "percentile_99_5": 240.0, "std": 40.25}},
    }
    dataset = {"channel_names": {"0": "US"}, "labels": {"background": 0, "muscle": 1, "fat": 2},
               "numTraining": 4, "file_ending": ".png"}
    for fname, obj in (("plans.json", plans), ("dataset.json", dataset)):
        with open(os.path.join(root, fname), "w") as f:
            json.dump(obj, f, indent=1)
            f.write("\n")
    in_shape = (1, 1, 32, 32)
    x = torch.randn(in_shape, generator=torch.Generator().manual_seed(3000))
    x.numpy().astype("<f4").tofile(os.path.join(out, "fake_in.bin"))
    outs = []
    for fold in (0, 1):
        net = build(PLAIN, FAKE_ARCH, 1, 3, 40 + fold)
        perturb(net, in_shape, torch.Generator().manual_seed(4000 + fold))
        os.makedirs(os.path.join(root, f"fold_{fold}"))
        torch.save(checkpoint(net, FAKE_ARCH, "2d_small", fold, plans, dataset),
                   os.path.join(root, f"fold_{fold}", "checkpoint_final.pth"))
        y64 = forward(net.double(), x.double()).numpy()
        y64.astype("<f4").tofile(os.path.join(out, f"fake_fold{fold}_out.bin"))
        outs.append(f"fake_fold{fold}_out.bin")
    cv = os.path.join(root, "crossval_results_folds_0_1")
    os.makedirs(cv)
    # determine_postprocessing's result: largest foreground region over all labels (label_manager
    # .foreground_labels are numpy ints), then per label in dataset.json's order
    fns = [remove_all_but_largest_component_from_segmentation] * 2
    kws = [{"labels_or_regions": [np.int64(1), np.int64(2)]}, {"labels_or_regions": np.int64(2)}]
    save_pickle((fns, kws), os.path.join(cv, "postprocessing.pkl"))
    with open(os.path.join(cv, "postprocessing.json"), "w") as f:
        json.dump({"postprocessing_fns": [fn.__name__ for fn in fns],
                   "postprocessing_kwargs": [{"labels_or_regions": [1, 2]}, {"labels_or_regions": 2}]}, f, indent=1)
    s = convert.convert_nnunet(root, os.path.join(out, "fake_2folds.safetensors"), ["all"])
    manifest["fake"] = {"model": "fake_2folds.safetensors", "results": os.path.relpath(root, out),
                        "input": "fake_in.bin", "input_shape": list(in_shape), "outputs": outs,
                        "output_shape": [1, 3, 32, 32], "folds": s["folds"]}
    print(f"fake results folder: {s['folds']}, {s['tensors']} tensors", file=sys.stderr)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else OUT
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(2)
    import nnunetv2  # noqa: F401  (version below)
    from importlib.metadata import version
    manifest = {"torch": torch.__version__, "nnunetv2": version("nnunetv2"),
                "dynamic_network_architectures": version("dynamic_network_architectures"), "variants": []}
    assert dynamic_network_architectures
    variants(out, manifest)
    fake_results(out, manifest)
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
