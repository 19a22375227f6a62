import numpy as np
import pytest
import torch

from wsss.algorithms.path_index import PathIndex, edge_to_affinity, path_cells, search_directions


def brute_force_directions(radius):
    """Every offset of the open disk in the half-plane y > 0 or (y = 0, x > 0)."""
    return {(y, x) for y in range(-radius, radius + 1) for x in range(-radius, radius + 1)
            if x * x + y * y < radius * radius and (y > 0 or (y == 0 and x > 0))}


def brute_force_cells(direction):
    """Cells of the box between 0 and the direction closer than 1 to the line through both."""
    dy, dx = direction
    norm = np.hypot(dy, dx)
    return {(y, x) for y in range(-20, 21) for x in range(-20, 21)
            if min(0, dy) <= y <= max(0, dy) and min(0, dx) <= x <= max(0, dx)
            and abs(dy * x - dx * y) / norm < 1 - 1e-12}


@pytest.mark.parametrize("radius", [2, 5, 10])
def test_search_directions_cover_the_half_disk_in_the_published_order(radius):
    directions = search_directions(radius)
    assert set(directions) == brute_force_directions(radius)
    assert len(directions) == len(set(directions))
    disk = sum(1 for y in range(-radius, radius + 1) for x in range(-radius, radius + 1)
               if x * x + y * y < radius * radius)
    assert len(directions) == (disk - 1) // 2
    assert directions[:radius - 1] == [(0, x) for x in range(1, radius)]
    assert directions[radius - 1:] == sorted(directions[radius - 1:])  # by y, then x


def test_path_cells_by_hand():
    assert path_cells((0, 3)) == [(0, 3), (0, 2), (0, 1), (0, 0)]
    assert path_cells((1, 1)) == [(1, 1), (0, 1), (1, 0), (0, 0)]
    assert path_cells((1, -1)) == [(1, -1), (0, -1), (1, 0), (0, 0)]
    assert path_cells((2, 1)) == [(2, 1), (1, 1), (2, 0), (0, 1), (1, 0), (0, 0)]
    # (2, 3): |2x − 3y| < √13 drops (0, 2), (0, 3), (2, 0), (2, 1) from the 3×4 box
    assert path_cells((2, 3)) == [(2, 3), (1, 3), (2, 2), (1, 2), (1, 1), (0, 1), (1, 0), (0, 0)]


@pytest.mark.parametrize("radius", [5, 10])
def test_path_cells_match_the_definition(radius):
    for direction in search_directions(radius):
        cells = path_cells(direction)
        assert set(cells) == brute_force_cells(direction)
        assert cells[0] == direction and cells[-1] == (0, 0)
        distances = [abs(y) + abs(x) for y, x in cells]
        assert distances == sorted(distances, reverse=True)


def test_groups_are_by_increasing_path_length_then_search_order():
    index = PathIndex(10)
    order = {direction: position for position, direction in enumerate(index.directions)}
    lengths = [len(path_cells(group[0])) for group in index.groups]
    assert lengths == sorted(set(lengths))
    for group in index.groups:
        assert {len(path_cells(direction)) for direction in group} == {len(path_cells(group[0]))}
        assert [order[direction] for direction in group] == sorted(order[direction] for direction in group)
    assert [tuple(direction) for direction in index.pair_directions] == [d for group in index.groups for d in group]
    assert sorted(order[tuple(d)] for d in index.pair_directions) == list(range(len(index.directions)))


def test_training_buffers_of_the_published_affinitynet():
    """radius 10 on 128×128: the shapes the published checkpoints' path_indices_* buffers have."""
    index = PathIndex(10, (128, 128))
    assert len(index.directions) == 152
    assert len(index.path_indices) == 20
    assert [tuple(t.shape[:2]) for t in index.path_indices][:5] == [(2, 2), (2, 3), (4, 4), (2, 5), (6, 6)]
    assert tuple(index.path_indices[-1].shape) == (6, 22, 13090)
    assert all(t.dtype == torch.int64 and t.shape[2] == 119 * 110 for t in index.path_indices)
    assert sum(t.shape[0] for t in index.path_indices) == 152
    assert tuple(index.dst_indices.shape) == (152, 13090)


def test_training_indices_by_brute_force():
    height, width, radius = 20, 24, 10
    index = PathIndex(radius, (height, width))
    sources = [(y, x) for y in range(0, height - radius + 1) for x in range(radius - 1, width - radius + 1)]
    assert index.src_indices.tolist() == [y * width + x for y, x in sources]
    pair = 0
    for group, indices in zip(index.groups, index.path_indices):
        assert tuple(indices.shape) == (len(group), len(path_cells(group[0])), len(sources))
        for position, direction in enumerate(group):
            for step, (cy, cx) in enumerate(path_cells(direction)):
                expected = [(y + cy) * width + (x + cx) for y, x in sources]
                assert indices[position, step].tolist() == expected
            dy, dx = direction
            assert index.dst_indices[pair].tolist() == [(y + dy) * width + (x + dx) for y, x in sources]
            pair += 1
    assert pair == len(index.directions)
    every = torch.cat([t.reshape(-1) for t in index.path_indices])
    assert every.min() >= 0 and every.max() < height * width


def test_edge_to_affinity_by_brute_force():
    height, width = 20, 24
    index = PathIndex(10, (height, width))
    edge = torch.rand(2, 1, height, width, generator=torch.Generator().manual_seed(0))
    aff = edge_to_affinity(edge, index.path_indices)
    n_src = len(index.src_indices)
    assert tuple(aff.shape) == (2, 152, n_src)
    flat = edge.reshape(2, -1).numpy()
    width_src = width - 2 * 9
    for b in range(2):
        for pair, (dy, dx) in enumerate(index.pair_directions.tolist()):
            for s in range(0, n_src, 7):
                y, x = s // width_src, 9 + s % width_src
                cells = [(y + cy) * width + (x + cx) for cy, cx in path_cells((dy, dx))]
                assert aff[b, pair, s].item() == pytest.approx(1 - flat[b, cells].max(), abs=1e-7)
