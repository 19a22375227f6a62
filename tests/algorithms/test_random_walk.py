import pytest
import torch

from bench.dense_rw import dense_random_walk
from wsss.algorithms.path_index import path_cells, search_directions
from wsss.algorithms.random_walk import affinity_stencil, normalise_rw, random_walk, transition_matrix_transposed


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """256 tiny sparse products are all thread synchronisation: on a busy machine each one waits for
    a descheduled worker thread (seconds per test instead of milliseconds). One thread avoids that."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_inputs(count, height, width, seed):
    generator = torch.Generator().manual_seed(seed)
    cams = torch.rand(count, height, width, generator=generator)
    edge = torch.rand(height, width, generator=generator) ** 3
    return cams, edge


def brute_force_pairs(edge, radius):
    """{(i, j): a_ij} over ordered in-image pairs j − i = ± a search direction, from the definition."""
    height, width = edge.shape
    pairs = {}
    for y in range(height):
        for x in range(width):
            for dy, dx in search_directions(radius):
                if 0 <= y + dy < height and 0 <= x + dx < width:
                    along_path = [edge[y + cy, x + cx].item() for cy, cx in path_cells((dy, dx))]
                    i, j = y * width + x, (y + dy) * width + (x + dx)
                    pairs[(i, j)] = pairs[(j, i)] = 1 - max(along_path)
    return pairs


def test_affinity_stencil_by_brute_force():
    height, width = 6, 8
    _, edge = random_inputs(1, height, width, seed=1)
    expected = brute_force_pairs(edge, radius=5)
    offsets, stencil, inside = affinity_stencil(edge, radius=5)
    assert len(offsets) == 69 and stencil.shape == inside.shape == (height, width, 69)
    assert offsets == sorted(offsets) and (0, 0) in offsets
    found = {}
    for k, (dy, dx) in enumerate(offsets):
        for y in range(height):
            for x in range(width):
                in_image = 0 <= y + dy < height and 0 <= x + dx < width
                assert inside[y, x, k].item() == in_image
                if (dy, dx) == (0, 0):
                    assert stencil[y, x, k] == 1
                elif in_image:
                    found[(y * width + x, (y + dy) * width + (x + dx))] = stencil[y, x, k].item()
                else:
                    assert stencil[y, x, k] == 0
    assert found.keys() == expected.keys()
    assert all(found[pair] == pytest.approx(expected[pair], abs=1e-7) for pair in expected)


@pytest.mark.parametrize("beta", [3, 0])
def test_transition_matrix_by_brute_force(beta):
    """A_ij = a_ij^β on pairs, A_ii = 1, 0 elsewhere (also for β = 0); T = A / column sums."""
    height, width = 5, 7
    _, edge = random_inputs(1, height, width, seed=2)
    affinity = torch.eye(35, dtype=torch.float64)
    for (i, j), value in brute_force_pairs(edge.double(), radius=5).items():
        affinity[i, j] = value ** beta
    expected = affinity / affinity.sum(dim=0, keepdim=True)
    transposed = transition_matrix_transposed(edge, beta=beta)
    assert transposed.layout == torch.sparse_csr
    assert torch.allclose(transposed.to_dense().t(), expected, rtol=1e-6, atol=1e-12)
    assert transposed.values().numel() == 35 + len(brute_force_pairs(edge, radius=5))


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
