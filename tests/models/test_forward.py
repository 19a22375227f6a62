"""Every registered backbone in each network that uses it: the CAM classifier, AffinityNet and
DeepLabv3+, built from scratch (`pretrained="none"`) and run once on CPU in eval mode.

The input is one 64×80 image: non-square, so a swapped height and width shows, and the smallest
size whose 1/4-resolution grid (16×20) still holds AffinityNet's radius-10 training pairs. Every
backbone keeps 1/16 resolution in its last stage (ResNet: stride 1 in layer4; ResNeSt: `dilation=2`).
"""
import pytest
import torch

from wsss.algorithms.path_index import PathIndex
from wsss.models.affinitynet import AffinityNet
from wsss.models.backbones import BACKBONES
from wsss.models.classifier import Classifier
from wsss.models.segmentation_models import build_segmentation_model

pytestmark = pytest.mark.usefixtures("one_thread")

HEIGHT, WIDTH = 64, 80
ARCHITECTURES = sorted(BACKBONES)
STAGE_STRIDES = (4, 4, 8, 16, 16)


def image():
    torch.manual_seed(0)
    return torch.randn(1, 3, HEIGHT, WIDTH)


def size_at(stride):
    return HEIGHT // stride, WIDTH // stride


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_classifier(architecture):
    torch.manual_seed(0)
    model = Classifier(architecture, pretrained="none").eval()
    images = image()
    with torch.no_grad():
        stages = model.forward_stages(images)
        logits = model(images)
        cam_logits, features = model(images, with_cam=True)
    for output, stride, channels in zip(stages, STAGE_STRIDES, model.stage_channels):
        assert output.shape == (1, channels, *size_at(stride))
    assert logits.shape == cam_logits.shape == (1, 20)
    assert features.shape == (1, 20, *size_at(16))
    assert torch.isfinite(features).all() and features.abs().max() > 0
    # a bias-free 1×1 convolution commutes with the spatial mean: both paths give the same logits
    torch.testing.assert_close(cam_logits, features.mean(dim=(2, 3)))
    torch.testing.assert_close(logits, cam_logits, rtol=1e-4, atol=1e-4 * features.abs().max().item())


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_affinitynet(architecture):
    torch.manual_seed(0)
    path_index = PathIndex(10, size_at(4))
    model = AffinityNet(architecture, pretrained="none", path_index=path_index).eval()
    with torch.no_grad():
        edge = model(image())
        edge_again, affinities = model(image(), with_affinity=True)
    assert edge.shape == (1, 1, *size_at(4))
    assert torch.isfinite(edge).all()
    assert torch.equal(edge, edge_again)
    pairs = len(path_index.src_indices)
    assert pairs == (size_at(4)[0] - 9) * (size_at(4)[1] - 18)
    assert affinities.shape == (1, len(path_index.directions), pairs)
    # a pair's affinity is 1 − the largest edge probability on its path, so within [0, 1]
    assert affinities.min() >= 0 and affinities.max() <= 1


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_deeplab(architecture):
    torch.manual_seed(0)
    model = build_segmentation_model("DeepLabv3+", architecture, pretrained="none").eval()
    with torch.no_grad():
        logits = model(image())
    assert logits.shape == (1, 21, HEIGHT, WIDTH)
    assert torch.isfinite(logits).all() and logits.std() > 0
