"""torchvision.models.vgg19 / vgg19_bn: VGG(make_layers(cfg "E", batch_norm), num_classes, init_weights, dropout)."""
from ._torchvision import Entry

SIGNATURE = [("num_classes", 1000), ("init_weights", True), ("dropout", 0.5)]
CFG_E = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]


def _features(bn):
    """{index in features: (cout, cin)} of the convs, with batch norm at index + 1 when bn"""
    convs, i, cin = {}, 0, 3
    for v in CFG_E:
        if v == "M":
            i += 1
        else:
            convs[i] = (v, cin)
            cin = v
            i += 3 if bn else 2
    return convs


def _expected(bn):
    def e(k):
        out = {}
        for i, (co, ci) in _features(bn).items():
            out[f"features.{i}.weight"] = (co, ci, 3, 3)
            out[f"features.{i}.bias"] = (co,)
            if bn:
                out[f"features.{i + 1}.running_var"] = (co,)
        out["classifier.0.weight"] = (4096, 512 * 7 * 7)
        out["classifier.3.weight"] = (4096, 4096)
        out["classifier.6.weight"] = (k["num_classes"], 4096)
        return out
    return e


VGG19 = Entry("torchvision.vgg19", SIGNATURE, "classifier.6", "features.0", _expected(False))
VGG19_BN = Entry("torchvision.vgg19_bn", SIGNATURE, "classifier.6", "features.0", _expected(True))
