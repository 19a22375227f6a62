"""The CPN entry of the CAM-method registry: its published flags, the triplet step against the loss
of three separate passes, the training transform's per-image mask generator, the optimiser groups,
the registered-backbone trunk, and the CAM routines' scale."""
import argparse
import copy
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from batchnorm_checks import randomise_batchnorm
from PIL import Image
from torch import nn

from wsss.algorithms.cam import strided_size
from wsss.algorithms.complementary_patch import draw_superpixels, superpixel_keep_mask, superpixels
from wsss.algorithms.cpn_cam import cpn_cam
from wsss.algorithms.cpn_losses import cpn_loss
from wsss.data.transforms import TrainTransform
from wsss.methods import get_method
from wsss.methods.base import Schedule
from wsss.methods.cpn import (
    IMAGENET_WEIGHTS_FILE,
    BackboneTrunk,
    FrozenBatchNorm2d,
    build_network,
    cpn_image_cams,
    half_scale_normalise,
    use_frozen_batchnorm,
)
from wsss.models.cpn import CPN
from wsss.utils.cli import add_training_arguments

METHOD = get_method("cpn")
HEAD_LAYERS = ("fc8", "f8_3", "f8_4", "f9", "f10")


def parse(argv):
    parser = argparse.ArgumentParser()
    add_training_arguments(parser)
    METHOD.add_arguments(parser)
    return parser.parse_args(argv)


def test_published_defaults_and_spellings():
    args = parse([])
    assert (args.batch_size, args.max_epoch, args.lr, args.wd, args.image_size) == (4, 8, 0.01, 5e-4, 448)
    assert (args.min_image_size, args.max_image_size, args.num_workers, args.nesterov) == (448, 768, 2, False)
    assert (args.tag, args.architecture, args.pretrained, args.momentum) == ("CPN", "resnet38d", "imagenet", None)
    assert (args.train_list, args.val_list, args.mode, args.augment) == ("voc12/train_aug.txt", "voc12/val.txt",
                                                                       "fix", "colorjitter")
    args = parse(["--max_epoches", "3", "--wt_dec", "0.001", "--crop_size", "64", "--session_name", "s",
                  "--voc12_root", "voc", "--network", "network.resnet38_CPN", "--weights", "w.pth"])
    assert (args.max_epoch, args.wd, args.image_size, args.tag, args.data_dir) == (3, 0.001, 64, "s", "voc")
    assert (args.architecture, args.pretrained) == ("resnet38d", "w.pth")
    args = parse(["--max_epoch", "5", "--architecture", "resnet_mini", "--pretrained", "none", "--tag", "t"])
    assert (args.max_epoch, args.architecture, args.pretrained, args.tag) == (5, "resnet_mini", "none", "t")
    with pytest.raises(SystemExit):
        parse(["--network", "network.resnet38_cls"])


def test_check_refuses_batch_statistics_for_resnet38d():
    with pytest.raises(ValueError, match="resnet38d's BatchNorm is always frozen"):
        METHOD.check(parse(["--mode", "normal"]))
    METHOD.check(parse(["--mode", "normal", "--network", "resnet_mini"]))


class PixelNet(nn.Module):
    """Per-pixel maps of the input (so a batched pass equals separate passes): cam = 1×1 conv, cam_rv
    = cam² + the image mean over channels."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 21, 1)

    def forward(self, x):
        cam = self.conv(x)
        return cam, cam ** 2 + x.mean(dim=1, keepdim=True)


def test_step_is_cpn_loss_of_the_three_images_through_one_network():
    torch.manual_seed(0)
    network = PixelNet()
    images = torch.randn(2, 3, 6, 5)
    labels = torch.tensor([[1.0] + [0.0] * 19, [0.0, 1.0, 1.0] + [0.0] * 17])
    keep = (torch.rand(2, 6, 5) > 0.4).float()
    kept = keep.double().mean(dim=(1, 2))
    result = METHOD.step_losses(network, [images, labels, keep, kept], parse([]), Schedule(0, 10, 2))
    img1 = images * keep[:, None]
    img2 = images * (1 - keep[:, None])
    expected = cpn_loss([network(images), network(img1), network(img2)], labels, kept.numpy(), 1 - kept.numpy())
    assert set(result) == {"total", "cls", "tcp", "cpcr"}
    for name in result:
        assert result[name].item() == pytest.approx(expected[name].item(), rel=1e-6), name
    assert result["tcp"].item() > 0 and result["cpcr"].item() > 0
    result["total"].backward()
    assert network.conv.weight.grad.abs().sum() > 0


def test_transform_draws_the_mask_from_a_per_image_generator():
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 56, 3), dtype=np.uint8))
    transform = METHOD.training_transform(32, 32, 48, "colorjitter")
    numpy_state = np.random.get_state()[1].copy()
    random.seed(5)
    crop, (keep, kept) = transform(image)
    assert np.array_equal(np.random.get_state()[1], numpy_state)  # numpy's global generator untouched

    random.seed(5)  # the same chain by hand: the crop, then a generator seeded from Python's `random`
    expected_crop, _ = TrainTransform(32, 32, 48, "colorjitter")(image)
    rng = np.random.default_rng(random.getrandbits(64))
    labels = superpixels(torch.from_numpy(expected_crop))
    expected_keep, expected_kept = superpixel_keep_mask(labels, draw_superpixels(int(labels.max()), rng))
    assert np.array_equal(crop, expected_crop) and np.array_equal(keep, expected_keep)
    assert crop.shape == (3, 32, 32) and keep.shape == (32, 32) and set(np.unique(keep)) <= {0.0, 1.0}
    assert isinstance(kept, np.float64) and kept == expected_kept == keep.astype(np.float64).mean()
    assert 0 < kept < 1

    random.seed(6)
    assert not np.array_equal(transform(image)[1][0], keep)


def test_parameter_groups_are_cpns_convolution_groups():
    network = build_network("resnet_mini", "fix", "none")
    groups = METHOD.parameter_groups(network)
    assert {id(p) for p in groups[2]} == {id(getattr(network, name).weight) for name in HEAD_LAYERS}
    trunk_convolutions = [m.weight for m in network.backbone.model.modules() if isinstance(m, nn.Conv2d)]
    assert [id(p) for p in groups[0]] == [id(p) for p in trunk_convolutions]
    assert groups[1] == [] and groups[3] == []
    norms = [m for m in network.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and not any(m.weight.requires_grad or m.bias.requires_grad for m in norms)


def test_backbone_trunk_gives_three_levels_of_one_size():
    torch.manual_seed(0)
    trunk = BackboneTrunk("resnet_mini", "fix", "none").eval()
    x = torch.randn(1, 3, 64, 48)
    levels = trunk.forward_features(x)
    stages = trunk.forward_stages(x)
    assert {name: tuple(level.shape) for name, level in levels.items()} == {
        "conv4": (1, 128, 4, 3), "conv5": (1, 256, 4, 3), "conv6": (1, 512, 4, 3)}
    assert trunk.feature_channels == {"conv4": 128, "conv5": 256, "conv6": 512}
    stage3 = stages[2]  # 1/8: 8×6, each conv4 pixel is the mean of a 2×2 block
    assert torch.allclose(levels["conv4"], stage3.reshape(1, 128, 4, 2, 3, 2).mean(dim=(3, 5)), atol=1e-6)
    assert torch.equal(levels["conv6"], stages[4])
    cam, cam_rv = CPN(trunk).eval()(x)
    assert cam.shape == cam_rv.shape == (1, 21, 64, 48)


def test_checkpoint_keys_have_no_trunk_prefix():
    network = build_network("resnet_mini", "fix", "none")
    keys = list(network.state_dict())
    assert keys[-5:] == [f"{name}.weight" for name in HEAD_LAYERS]
    assert not any(key.startswith("backbone.") for key in keys) and "model.conv1.weight" in keys


def test_resnet38d_weight_file_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(FileNotFoundError, match=f"{IMAGENET_WEIGHTS_FILE}: ResNet-38 weight file not found"):
        build_network("resnet38d", pretrained="imagenet")
    with pytest.raises(ValueError, match="an MXNet parameter file; convert it"):
        build_network("resnet38d", pretrained=str(tmp_path / "ilsvrc-cls_rna-a1_cls1000_ep-0001.params"))
    with pytest.raises(ValueError, match="unknown network 'vgg'"):
        build_network("vgg")


def test_half_scale_normalise_by_hand():
    e = 1e-5
    maps = torch.tensor([[[[2.0, 4.0], [-1.0, 0.0]], [[3.0, 3.0], [3.0, 3.0]]]])
    out = half_scale_normalise(maps)
    # map 0: clamp → [[2, 4], [0, 0]], lo 0, hi 4; the two zeros are "minimum" pixels: −e/(4 + e)/2
    expected0 = torch.tensor([[(2 - e) / (4 + e), (4 - e) / (4 + e)], [-e / (4 + e)] * 2]) / 2
    # map 1: constant 3: every pixel is a minimum pixel, (0 − 3 − e)/e/2
    expected1 = torch.full((2, 2), (-3 - e) / e / 2)
    assert torch.allclose(out[0, 0], expected0, rtol=1e-6) and torch.allclose(out[0, 1], expected1, rtol=1e-5)


def test_training_cams_are_the_refined_maps_on_cpns_scale():
    network = PixelNet()
    images = torch.randn(2, 3, 6, 5)
    cams = METHOD.training_cams(network, images)
    assert cams.shape == (2, 20, 6, 5)
    assert torch.equal(cams, half_scale_normalise(network(images)[1][:, 1:]))
    assert cams.max() <= 0.5


def test_image_cams_are_cpn_cam_with_the_stride_4_map_resized_from_it():
    torch.manual_seed(0)
    network = PixelNet().eval()
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (11, 14, 3), dtype=np.uint8))
    label = np.zeros(20, np.float32)
    label[[2, 7]] = 1
    keys, cam, hr_cam = cpn_image_cams(network, image, label, (1.0, 0.5), torch.device("cpu"))
    expected_keys, expected = cpn_cam(network, image, label, (1.0, 0.5))
    assert keys.tolist() == expected_keys.tolist() == [0, 3, 8]
    assert np.array_equal(hr_cam, expected) and hr_cam.shape == (2, 11, 14)
    assert cam.shape == (2, *strided_size(11, 14)) == (2, 3, 4)
    resized = F.interpolate(torch.from_numpy(expected)[None], (3, 4), mode="bilinear", align_corners=False)[0]
    assert np.allclose(cam, resized.numpy())
    keys, cam, hr_cam = cpn_image_cams(network, image, np.zeros(20, np.float32), (1.0,), torch.device("cpu"))
    assert keys.tolist() == [0] and cam.shape == (0, 3, 4) and hr_cam.shape == (0, 11, 14)


def test_frozen_batchnorm_keeps_outputs_and_gradients_and_saves_no_input():
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Sequential(nn.BatchNorm2d(4)))
    randomise_batchnorm(plain)
    plain.eval()
    frozen = use_frozen_batchnorm(copy.deepcopy(plain))
    assert [type(m) for m in frozen.modules()].count(FrozenBatchNorm2d) == 2
    assert list(frozen.state_dict()) == list(plain.state_dict())
    x = torch.randn(2, 3, 6, 5)
    outputs = []
    for model in (plain, frozen):
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
            out = model(x)
        (out ** 2).sum().backward()
        outputs.append((out, model[0].weight.grad.clone(), sum(saved)))
    assert torch.equal(outputs[0][0], outputs[1][0])
    gradient, frozen_gradient = outputs[0][1], outputs[1][1]  # equal up to float rounding
    assert torch.allclose(gradient, frozen_gradient, rtol=0, atol=1e-6 * gradient.abs().max())
    assert outputs[1][2] < outputs[0][2]  # the batch norms keep their per-channel scale, not their input
    frozen.train()  # in training mode (batch statistics) it is nn.BatchNorm2d
    assert torch.equal(frozen(x), plain.train()(x))
