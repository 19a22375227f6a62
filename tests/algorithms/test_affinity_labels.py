import math

import numpy as np
import pytest
import torch

from wsss.algorithms.affinity_labels import affinity_loss, affinity_pair_labels, make_affinity_label
from wsss.algorithms.path_index import PathIndex


def brute_force_affinity_label(hr_cam, keys, fg_threshold, bg_threshold):
    """docs/design.md §6.3 pixel by pixel, without the CRF."""
    _, height, width = hr_cam.shape
    label = np.zeros((height, width), dtype=np.int64)
    for y in range(height):
        for x in range(width):
            scores = [fg_threshold] + list(hr_cam[:, y, x])
            fg = keys[scores.index(max(scores))]
            scores[0] = bg_threshold
            bg = keys[scores.index(max(scores))]
            label[y, x] = 255 if fg == 0 else fg
            if fg + bg == 0:
                label[y, x] = 0
    return label


def test_affinity_label_without_crf_by_brute_force():
    hr_cam = np.random.default_rng(0).random((3, 9, 11)).astype(np.float32) ** 6
    keys = np.array([0, 5, 9, 15])
    label = make_affinity_label(None, hr_cam, keys, 0.40, 0.10, crf_iteration=0)
    assert label.dtype == np.uint8
    assert np.array_equal(label, brute_force_affinity_label(hr_cam, keys, 0.40, 0.10))
    assert {0, 255} <= set(np.unique(label)) and len(np.unique(label)) > 3


def test_affinity_label_with_crf_snaps_the_unsure_ring_to_the_object_edge():
    """A red square on grey; the CAM is 1 inside, fading out across the square's border: without the
    CRF a ring is unsure (255); the CRF gives the square its class and the rest background."""
    size = 48
    image = np.full((size, size, 3), 120, dtype=np.uint8)
    image[12:36, 12:36] = (220, 30, 30)
    rows, cols = np.mgrid[:size, :size]
    distance = np.maximum(np.abs(rows - 23.5), np.abs(cols - 23.5))
    hr_cam = np.clip(1 - (distance - 8) / 10, 0, 1)[None].astype(np.float32)
    keys = np.array([0, 7])
    square = np.zeros((size, size), dtype=bool)
    square[12:36, 12:36] = True

    without_crf = make_affinity_label(image, hr_cam, keys, 0.40, 0.10, crf_iteration=0)
    assert np.any(without_crf == 255)
    label = make_affinity_label(image, hr_cam, keys, 0.40, 0.10)
    assert np.array_equal(label, np.where(square, 7, 0).astype(np.uint8))


def test_pair_labels_by_brute_force():
    height, width = 20, 24
    index = PathIndex(10, (height, width))
    label = np.random.default_rng(2).choice([0, 0, 1, 3, 255], size=(height, width)).astype(np.uint8)
    bg_pos, fg_pos, neg = affinity_pair_labels(label, index.src_indices, index.dst_indices)
    assert bg_pos.shape == fg_pos.shape == neg.shape == (152, 11 * 6)
    assert bg_pos.dtype == torch.float32
    for pair, (dy, dx) in enumerate(index.pair_directions.tolist()):
        for s in range(11 * 6):
            y, x = s // 6, 9 + s % 6
            a, b = int(label[y, x]), int(label[y + dy, x + dx])
            valid = a < 21 and b < 21
            assert bg_pos[pair, s] == float(valid and a == b == 0)
            assert fg_pos[pair, s] == float(valid and a == b and a > 0)
            assert neg[pair, s] == float(valid and a != b)
    assert bg_pos.sum() > 0 and fg_pos.sum() > 0 and neg.sum() > 0


def test_pair_labels_of_a_batch_are_those_of_each_map():
    index = PathIndex(10, (20, 24))
    maps = torch.from_numpy(np.random.default_rng(4).choice([0, 2, 5, 255], size=(2, 20, 24)).astype(np.uint8))
    batch = affinity_pair_labels(maps, index.src_indices, index.dst_indices)
    for image in range(2):
        single = affinity_pair_labels(maps[image], index.src_indices, index.dst_indices)
        for batch_mask, single_mask in zip(batch, single):
            assert batch_mask.shape == (2, 152, 66)
            assert torch.equal(batch_mask[image], single_mask)


def test_affinity_loss_by_hand():
    aff = torch.tensor([[[0.9, 0.2, 0.5, 0.7]]])
    bg_pos = torch.tensor([[[1.0, 0.0, 0.0, 0.0]]])
    fg_pos = torch.tensor([[[0.0, 0.0, 0.0, 1.0]]])
    neg = torch.tensor([[[0.0, 1.0, 1.0, 0.0]]])
    bg = -math.log(0.9 + 1e-5) / (1 + 1e-5)
    fg = -math.log(0.7 + 1e-5) / (1 + 1e-5)
    ng = (-math.log(1 + 1e-5 - 0.2) - math.log(1 + 1e-5 - 0.5)) / (2 + 1e-5)
    loss, terms = affinity_loss(aff, bg_pos, fg_pos, neg)
    assert terms["bg"].item() == pytest.approx(bg, rel=1e-6)
    assert terms["fg"].item() == pytest.approx(fg, rel=1e-6)
    assert terms["neg"].item() == pytest.approx(ng, rel=1e-6)
    assert loss.item() == pytest.approx((bg / 2 + fg / 2 + ng) / 2, rel=1e-6)


def test_affinity_loss_pools_the_batch_by_brute_force():
    generator = torch.Generator().manual_seed(3)
    aff = torch.rand(2, 5, 7, generator=generator)
    kinds = torch.randint(0, 4, (2, 5, 7), generator=generator)  # 0 bg, 1 fg, 2 neg, 3 invalid
    bg_pos, fg_pos, neg = [(kinds == kind).float() for kind in range(3)]
    sums = {0: 0.0, 1: 0.0, 2: 0.0}
    counts = {0: 0, 1: 0, 2: 0}
    for value, kind in zip(aff.reshape(-1).tolist(), kinds.reshape(-1).tolist()):
        if kind < 3:
            sums[kind] += -math.log(value + 1e-5) if kind < 2 else -math.log(1 + 1e-5 - value)
            counts[kind] += 1
    bg, fg, ng = [sums[kind] / (counts[kind] + 1e-5) for kind in range(3)]
    loss, _ = affinity_loss(aff, bg_pos, fg_pos, neg)
    assert loss.item() == pytest.approx((bg / 2 + fg / 2 + ng) / 2, rel=1e-5)
