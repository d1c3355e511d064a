"""torchvision.models.resnet50: ResNet(Bottleneck, [3, 4, 6, 3], **kwargs)."""
from ._torchvision import Entry

SIGNATURE = [("num_classes", 1000), ("zero_init_residual", False), ("groups", 1), ("width_per_group", 64)]


def _expected(k):
    return {"conv1.weight": (64, 3, 7, 7), "bn1.running_var": (64,), "layer1.0.downsample.0.weight": (256, 64, 1, 1),
            "layer2.3.conv2.weight": (128, 128, 3, 3), "layer3.5.conv3.weight": (1024, 256, 1, 1),
            "layer4.2.bn3.running_mean": (2048,), "fc.weight": (k["num_classes"], 2048)}


RESNET50 = Entry("torchvision.resnet50", SIGNATURE, "fc", "conv1", _expected,
                 fixed={"groups": 1, "width_per_group": 64})
