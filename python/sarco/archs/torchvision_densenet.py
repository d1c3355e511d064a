"""torchvision.models.densenet121: DenseNet(32, (6, 12, 24, 16), 64, **kwargs). Checkpoints with the old
layer names (denselayer1.norm.1.weight) are renamed as torchvision's own _load_state_dict does."""
import re

from ._torchvision import Entry

SIGNATURE = [("bn_size", 4), ("drop_rate", 0.0), ("num_classes", 1000), ("memory_efficient", False)]
_OLD = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


def _rename(name):
    m = _OLD.match(name)
    return m.group(1) + m.group(2) if m else name


def _expected(k):
    bn = k["bn_size"] * 32
    return {"features.conv0.weight": (64, 3, 7, 7), "features.norm0.running_var": (64,),
            "features.denseblock1.denselayer1.conv1.weight": (bn, 64, 1, 1),
            "features.denseblock1.denselayer6.conv2.weight": (32, bn, 3, 3),
            "features.transition1.conv.weight": (128, 256, 1, 1),
            "features.denseblock4.denselayer16.norm1.weight": (512 + 15 * 32,),
            "features.norm5.running_mean": (1024,), "classifier.weight": (k["num_classes"], 1024)}


DENSENET121 = Entry("torchvision.densenet121", SIGNATURE, "classifier", "features.conv0", _expected, rename=_rename)
