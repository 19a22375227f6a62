import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from wsss.algorithms.cam import maps_to_label, multiscale_cams, strided_size, strided_up_size
from wsss.data.transforms import normalize


class PoolingClassifier(torch.nn.Module):
    """A deterministic stand-in: 16×16 average pooling and a fixed 3→20 mixing; records input sizes."""

    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.mix = torch.randn(20, 3, generator=generator)
        self.sizes = []

    def forward(self, images, with_cam=False):
        self.sizes.append(tuple(images.shape[2:]))
        pooled = F.avg_pool2d(images, 16, ceil_mode=True)
        features = torch.einsum("kc,bchw->bkhw", self.mix, pooled)
        return features.mean(dim=(2, 3)), features


def direct_cams(model, image, label, scales):
    width, height = image.size
    strided_total, high_total = 0, 0
    for scale in scales:
        size = (round(width * scale), round(height * scale))
        x = torch.from_numpy(normalize(image.resize(size, Image.BICUBIC)).transpose(2, 0, 1))[None]
        plain = torch.relu(model(x, with_cam=True)[1])[0]
        mirrored = torch.relu(model(x.flip(-1), with_cam=True)[1])[0]
        cams = plain + mirrored.flip(-1)
        strided_total = strided_total + F.interpolate(cams[None], strided_size(height, width), mode="bilinear", align_corners=False)[0]
        high_total = high_total + F.interpolate(cams[None], strided_up_size(height, width), mode="bilinear", align_corners=False)[0]
    classes = np.nonzero(label)[0]
    strided = strided_total[classes].numpy()
    high = high_total[classes, :height, :width].numpy()
    strided /= strided.reshape(len(classes), -1).max(axis=1)[:, None, None] + 1e-5
    high /= high.reshape(len(classes), -1).max(axis=1)[:, None, None] + 1e-5
    return strided, high


def test_multiscale_cams_match_a_direct_computation():
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, 37)[None, :, None] * np.ones((45, 1, 3))
    image = Image.fromarray(np.clip(ramp + rng.normal(0, 20, (45, 37, 3)), 0, 255).astype(np.uint8))
    label = np.zeros(20, np.float32)
    label[[2, 7, 19]] = 1
    model = PoolingClassifier()
    keys, cam, hr_cam = multiscale_cams(model, image, label, [0.5, 1.0, 1.5], torch.device("cpu"))
    # Python's round sends halves to even: 37·0.5 = 18.5 → 18, 45·0.5 = 22.5 → 22; 1.5: 55.5 → 56, 67.5 → 68
    assert model.sizes == [(22, 18), (45, 37), (68, 56)]
    assert keys.tolist() == [0, 3, 8, 20]
    assert cam.shape == (3, 12, 10) and hr_cam.shape == (3, 45, 37)
    assert cam.dtype == np.float32
    expected_cam, expected_hr = direct_cams(PoolingClassifier(), image, label, [0.5, 1.0, 1.5])
    assert np.allclose(cam, expected_cam, atol=1e-5)
    assert np.allclose(hr_cam, expected_hr, atol=1e-5)
    for maps in (cam, hr_cam):
        peaks = maps.reshape(3, -1).max(axis=1)
        assert np.all((peaks > 0.999) & (peaks < 1.0))


def test_flip_fusion_aligns_the_flipped_pass():
    # a model that only sees the left-most column block: fusion must put the flipped pass's
    # response back on the right-hand side, giving a symmetric map for a symmetric response
    class LeftEdge(torch.nn.Module):
        def forward(self, images, with_cam=False):
            features = torch.zeros(images.shape[0], 20, 1, 4)
            features[:, :, :, 0] = 1.0
            return features.mean(dim=(2, 3)), features

    label = np.zeros(20, np.float32)
    label[0] = 1
    _, cam, _ = multiscale_cams(LeftEdge(), Image.new("RGB", (64, 16)), label, [1.0], torch.device("cpu"))
    row = cam[0, 0]
    assert row[0] == pytest.approx(row[-1]) and row[0] > 0.99 and row[len(row) // 2] < 0.6


def test_no_positive_class_gives_empty_maps():
    label = np.zeros(20, np.float32)
    keys, cam, hr_cam = multiscale_cams(PoolingClassifier(), Image.new("RGB", (20, 18)), label, [1.0], torch.device("cpu"))
    assert keys.tolist() == [0] and cam.shape == (0, 5, 5) and hr_cam.shape == (0, 18, 20)


def test_maps_to_label_thresholds_and_maps_through_keys():
    maps = np.array([[[0.1, 0.5], [0.9, 0.2]], [[0.3, 0.6], [0.1, 0.25]]], np.float32)
    label = maps_to_label(maps, [0, 5, 12], 0.28)
    assert label.tolist() == [[12, 12], [5, 0]]
    assert maps_to_label(np.zeros((0, 2, 2), np.float32), [0], 0.1).tolist() == [[0, 0], [0, 0]]
