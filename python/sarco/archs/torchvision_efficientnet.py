"""torchvision.models.efficientnet_b0: EfficientNet(B0 MBConv settings, dropout, stochastic_depth_prob)."""
from ._torchvision import Entry

SIGNATURE = [("num_classes", 1000), ("dropout", 0.2), ("stochastic_depth_prob", 0.2)]


def _expected(k):
    return {"features.0.0.weight": (32, 3, 3, 3), "features.0.1.running_var": (32,),
            "features.1.0.block.0.0.weight": (32, 1, 3, 3), "features.1.0.block.1.fc1.weight": (8, 32, 1, 1),
            "features.2.0.block.0.0.weight": (96, 16, 1, 1), "features.6.3.block.2.fc2.weight": (1152, 48, 1, 1),
            "features.8.0.weight": (1280, 320, 1, 1), "classifier.1.weight": (k["num_classes"], 1280)}


EFFICIENTNET_B0 = Entry("torchvision.efficientnet_b0", SIGNATURE, "classifier.1", "features.0.0", _expected)
