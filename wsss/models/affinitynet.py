"""AffinityNet (docs/design.md §3.2, from IRN): edge branches on a frozen backbone.

Training (`forward(images, with_affinity=True)`) gives edge logits and the pair affinities of the
radius-10 training path index; inference (`edge_map`) gives the flip-averaged edge probabilities
of one image for the random walk.
"""
import torch
import torch.nn.functional as F
from torch import nn

from wsss.algorithms.cam import strided_size
from wsss.algorithms.path_index import PathIndex, edge_to_affinity
from wsss.models.backbones import Backbone

EDGE_CHANNELS = 32
TRAINING_RADIUS = 10
LABEL_GRID = (128, 128)
CANVAS = 512


def _edge_branch(in_channels, upsample=1):
    layers = [nn.Conv2d(in_channels, EDGE_CHANNELS, 1, bias=False), nn.GroupNorm(4, EDGE_CHANNELS)]
    if upsample > 1:
        layers.append(nn.Upsample(scale_factor=upsample, mode="bilinear", align_corners=False))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class AffinityNet(Backbone):
    """Backbone always in `fix` mode and in eval mode, its outputs detached: only the edge layers learn.

    Like the published model, the stages are registered again as `backbone.0…4`, the edge layers as
    `edge_layers.0…5`, and the training path index as buffers `path_indices_0…` (checkpoint keys).
    """

    def __init__(self, architecture, pretrained="imagenet", path_index=None):
        super().__init__(architecture, mode="fix", pretrained=pretrained)
        channels = self.stage_channels
        self.fc_edge1 = _edge_branch(channels[0])
        self.fc_edge2 = _edge_branch(channels[1])
        self.fc_edge3 = _edge_branch(channels[2], upsample=2)
        self.fc_edge4 = _edge_branch(channels[3], upsample=4)
        self.fc_edge5 = _edge_branch(channels[4], upsample=4)
        self.fc_edge6 = nn.Conv2d(5 * EDGE_CHANNELS, 1, 1, bias=True)
        self.backbone = nn.ModuleList(self.stages())
        self.edge_layers = nn.ModuleList([self.fc_edge1, self.fc_edge2, self.fc_edge3, self.fc_edge4,
                                          self.fc_edge5, self.fc_edge6])
        path_index = path_index or PathIndex(TRAINING_RADIUS, LABEL_GRID)
        self.path_index = path_index
        self.n_path_groups = len(path_index.path_indices)
        for index, indices in enumerate(path_index.path_indices):
            self.register_buffer(f"path_indices_{index}", indices)
        for parameter in self.backbone.parameters():
            parameter.requires_grad_(False)

    def train(self, mode=True):
        super().train(mode)
        self.backbone.eval()
        return self

    def trainable_parameters(self):
        return list(self.edge_layers.parameters())

    def forward(self, images, with_affinity=False):
        features = [feature.detach() for feature in self.forward_stages(images)]
        edges = [layer(feature) for layer, feature in zip(self.edge_layers, features)]
        height, width = edges[1].shape[2:]
        edges = [edge[..., :height, :width] for edge in edges]
        edge = self.fc_edge6(torch.cat(edges, dim=1))
        if with_affinity:
            indices = [getattr(self, f"path_indices_{index}") for index in range(self.n_path_groups)]
            return edge, edge_to_affinity(torch.sigmoid(edge), indices)
        return edge

    @torch.no_grad()
    def edge_map(self, image):
        """Edge probabilities (h/4 × w/4) of one normalised C×h×w image (docs/design.md §6.6).

        The image and its flip are zero-padded right/bottom to the 512 canvas (to a multiple of 16
        above it for larger images, where the published code would crop), cropped to the strided
        size, then averaged as sigmoid(edge/2 + flip(flipped edge)/2): crop before flip, so the
        flipped pass lines up with the image.
        """
        height, width = image.shape[1:]
        canvas_h = max(CANVAS, -(-height // 16) * 16)
        canvas_w = max(CANVAS, -(-width // 16) * 16)
        batch = torch.stack([image, image.flip(-1)])
        batch = F.pad(batch, [0, canvas_w - width, 0, canvas_h - height])
        rows, cols = strided_size(height, width)
        edge = self.forward(batch).float()[:, 0, :rows, :cols]  # float32 also under --amp autocast
        return torch.sigmoid(edge[0] / 2 + edge[1].flip(-1) / 2)
