import numpy as np
import pytest
import torch
from PIL import Image

from wsss.algorithms.cpn_cam import cpn_cam, normalize_image

E = 1e-5


class FixedNetwork:
    """Returns the same 1×21×2×4 `cam_rv` for every input, and records the inputs."""

    def __init__(self, maps):
        self.maps = torch.as_tensor(maps, dtype=torch.float32)[None]
        self.inputs = []

    def __call__(self, batch):
        self.inputs.append(batch.clone())
        return None, self.maps


def toy_image():
    return Image.fromarray(np.arange(24, dtype=np.uint8).reshape(2, 4, 3) * 10)


def test_clamp_min_max_and_half_scale_by_hand():
    maps = np.zeros((21, 2, 4), dtype=np.float32)
    maps[1] = [[1, 2, 2, 1], [-3, 0, 0, -3]]  # class 0: symmetric, negative part clamped
    maps[2] = [[1, 1, 1, 1], [2, 2, 2, 2]]    # class 1: minimum above 0
    maps[3] = [[5, 0, 0, 0], [0, 0, 0, 0]]    # class 2: asymmetric (flip-back), absent
    maps[4] = 7                                # class 3: present, constant
    label = np.zeros(20, dtype=np.float32)
    label[[0, 1, 3]] = 1
    keys, cams = cpn_cam(FixedNetwork(maps), toy_image(), label)
    assert keys.tolist() == [0, 1, 2, 4] and cams.shape == (3, 2, 4) and cams.dtype == np.float32
    # class 0: sum of 8 passes = 8·map (it is symmetric) → clamp → [[8,16,16,8],[0,0,0,0]]; lo 0, hi 16
    top, low, zero = (16 - E) / (16 + E) / 2, (8 - E) / (16 + E) / 2, -E / (16 + E) / 2
    np.testing.assert_allclose(cams[0], [[low, top, top, low], [zero] * 4], rtol=1e-6)
    assert cams[0].max() < 0.5
    # class 1: lo = 8: the minimum pixels are zeroed first and come out at −(8 + e)/(8 + e)/2 = −0.5
    np.testing.assert_allclose(cams[1], [[-0.5] * 4, [(8 - E) / (8 + E) / 2] * 4], rtol=1e-6)
    # class 3: a constant map (lo = hi) is all "minimum": −(56 + e)/e/2
    np.testing.assert_allclose(cams[2], np.full((2, 4), -(56 + E) / E / 2), rtol=1e-5)


def test_flipped_passes_are_flipped_back():
    maps = np.zeros((21, 2, 4), dtype=np.float32)
    maps[1] = [[4, 0, 0, 0], [0, 0, 0, 2]]
    label = np.eye(20, dtype=np.float32)[0]
    _, cams = cpn_cam(FixedNetwork(maps), toy_image(), label)
    # 4·map + 4·flip(map) = [[16, 0, 0, 16], [8, 0, 0, 8]]: lo 0, hi 16 (8·map if not flipped back)
    total = np.array([[16, 0, 0, 16], [8, 0, 0, 8]])
    np.testing.assert_allclose(cams[0], np.where(total > 0, (total - E) / (16 + E), -E / (16 + E)) / 2, rtol=1e-6)


def test_eight_passes_at_the_published_sizes():
    network = FixedNetwork(np.ones((21, 2, 4), dtype=np.float32))
    cpn_cam(network, toy_image(), np.eye(20, dtype=np.float32)[5])
    assert [tuple(x.shape) for x in network.inputs] == [(1, 3, 1, 2)] * 2 + [(1, 3, 2, 4)] * 2 + \
        [(1, 3, 3, 6)] * 2 + [(1, 3, 4, 8)] * 2
    for plain, flipped in zip(network.inputs[::2], network.inputs[1::2]):
        assert torch.equal(flipped, plain.flip(-1))
    red = np.arange(24).reshape(2, 4, 3)[0, 1, 0] * 10  # the scale-1 pass is the normalised image itself
    assert network.inputs[2][0, 0, 0, 1].item() == pytest.approx((red / 255 - 0.485) / 0.229, abs=1e-6)
    assert torch.equal(network.inputs[2][0], torch.from_numpy(normalize_image(toy_image())))
