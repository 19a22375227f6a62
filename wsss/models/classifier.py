"""The CAM classifier (docs/design.md §3.1): backbone → 1×1 conv to 20 classes, no bias."""
import torch
from torch import nn

from wsss.models.backbones import Backbone


class Classifier(Backbone):
    def __init__(self, architecture, num_classes=20, mode="fix", pretrained="imagenet"):
        super().__init__(architecture, mode, pretrained)
        self.classifier = nn.Conv2d(self.stage_channels[-1], num_classes, 1, bias=False)
        nn.init.kaiming_normal_(self.classifier.weight)

    def forward(self, images, with_cam=False):
        """Logits; with `with_cam`, also the class feature maps (logits = their spatial mean)."""
        x = self.forward_stages(images)[-1]
        if with_cam:
            features = self.classifier(x)
            return features.mean(dim=(2, 3)), features
        pooled = x.mean(dim=(2, 3), keepdim=True)
        return self.classifier(pooled).flatten(1)


def make_cam(features, epsilon=1e-5):
    """relu, then each map divided by its spatial max: relu(x − ε) / (max + ε) (docs/design.md §4)."""
    features = torch.relu(features)
    peak = features.flatten(2).max(dim=-1)[0][..., None, None]
    return torch.relu(features - epsilon) / (peak + epsilon)
