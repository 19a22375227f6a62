import pytest
import torch

from bench.dense_rw import dense_random_walk
from core.path_index import path_cells, search_directions
from core.random_walk import normalise_rw, random_walk, rw_affinity_pairs, transition_matrix_transposed


def random_inputs(count, height, width, seed):
    generator = torch.Generator().manual_seed(seed)
    cams = torch.rand(count, height, width, generator=generator)
    edge = torch.rand(height, width, generator=generator) ** 3
    return cams, edge


def test_rw_affinity_pairs_by_brute_force():
    height, width = 6, 8
    _, edge = random_inputs(1, height, width, seed=1)
    expected = {}
    for y in range(height):
        for x in range(width):
            for dy, dx in search_directions(5):
                if 0 <= y + dy < height and 0 <= x + dx < width:
                    along_path = [edge[y + cy, x + cx].item() for cy, cx in path_cells((dy, dx))]
                    expected[(y * width + x, (y + dy) * width + (x + dx))] = 1 - max(along_path)
    src, dst, aff = rw_affinity_pairs(edge, radius=5)
    found = {(s, d): a for s, d, a in zip(src.tolist(), dst.tolist(), aff.tolist())}
    assert found.keys() == expected.keys()
    assert all(found[pair] == pytest.approx(expected[pair], abs=1e-7) for pair in expected)


def test_transition_matrix_by_hand_from_the_pairs():
    """T_ij = a_ij^β / s_j and T_jj = 1 / s_j, s_j = 1 + Σ_i a_ij^β; nothing else is non-zero."""
    _, edge = random_inputs(1, 5, 7, seed=2)
    transition = transition_matrix_transposed(edge, beta=3).to_dense().t()
    src, dst, aff = rw_affinity_pairs(edge.double())
    weight = aff ** 3
    sums = torch.ones(35, dtype=torch.float64).index_add_(0, dst, weight).index_add_(0, src, weight)
    assert torch.allclose(transition[src, dst], weight / sums[dst])
    assert torch.allclose(transition[dst, src], weight / sums[src])
    assert torch.allclose(transition.diagonal(), 1 / sums)
    assert (transition != 0).sum() == 35 + 2 * len(src)
    assert torch.allclose(transition.sum(dim=0), torch.ones(35, dtype=torch.float64))


def test_two_pixel_walk_by_hand():
    """One pair: T = [[1, w], [w, 1]] / (1 + w), eigenvalues 1 and λ = (1 − w)/(1 + w)."""
    cams = torch.tensor([[[0.8, 0.2]]])
    edge = torch.tensor([[0.25, 0.5]])
    beta, exp_times = 2, 3
    weight = (1 - 0.5) ** beta
    lam_n = ((1 - weight) / (1 + weight)) ** (2 ** exp_times)
    x0, x1 = 0.8 * 0.75, 0.2 * 0.5
    expected = [0.5 * (x0 * (1 + lam_n) + x1 * (1 - lam_n)), 0.5 * (x0 * (1 - lam_n) + x1 * (1 + lam_n))]
    result = random_walk(cams, edge, beta=beta, exp_times=exp_times)
    assert result.reshape(-1).tolist() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("height, width", [(1, 6), (5, 7), (9, 9), (12, 17), (16, 11)])
@pytest.mark.parametrize("beta, exp_times", [(10, 8), (1, 3), (4, 0), (10, 5)])
def test_sparse_walk_equals_the_dense_formula(height, width, beta, exp_times):
    cams, edge = random_inputs(3, height, width, seed=height * 100 + width)
    sparse = random_walk(cams, edge, beta=beta, exp_times=exp_times)
    dense = dense_random_walk(cams, edge, beta=beta, exp_times=exp_times)
    assert sparse.dtype == torch.float32 and sparse.shape == (3, height, width)
    assert (normalise_rw(sparse) - normalise_rw(dense)).abs().max() < 1e-4


def test_zero_cams_give_a_zero_walk_not_nan():
    cams = torch.zeros(2, 6, 5)
    _, edge = random_inputs(1, 6, 5, seed=3)
    walk = normalise_rw(random_walk(cams, edge))
    assert torch.equal(walk, torch.zeros(2, 6, 5))


def test_normalise_rw_divides_by_the_global_max():
    rw = torch.tensor([[[1.0, 2.0]], [[4.0, 0.0]]])
    assert torch.equal(normalise_rw(rw), rw / 4)
    assert normalise_rw(torch.zeros(0, 3, 3)).shape == (0, 3, 3)


def test_a_constant_masked_map_is_a_fixed_point():
    """Columns of T sum to 1, so x = constant satisfies x·T = x whatever the edges."""
    _, edge = random_inputs(1, 8, 6, seed=4)
    cams = 0.3 / (1 - edge)[None]
    walk = random_walk(cams, edge, beta=10, exp_times=8)
    assert torch.allclose(walk, torch.full_like(walk, 0.3), rtol=1e-6)
