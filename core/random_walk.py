"""The random walk of inference_rw (SPEC §6.6) as sparse products.

The published code builds the dense (hw)×(hw) transition matrix T and squares it `exp_times`
times. T has about 70 non-zeros per column at radius 5, so here x·T^(2^exp_times) is computed as
2^exp_times products of x with a sparse T: same numbers, a fraction of the time and memory
(bench/bench_random_walk.py, results in bench/results/random_walk.md).
"""
import warnings

import torch

from core.path_index import PathIndex

__all__ = ["rw_affinity_pairs", "transition_matrix_transposed", "random_walk", "normalise_rw"]


def rw_affinity_pairs(edge, radius=5):
    """Every pair of in-image pixels related by a search direction of `radius`, with its affinity.

    edge: h×w edge probabilities. Returns (src, dst, aff) on edge's device: int64 flat indices
    (y·w + x) and affinities 1 − max(edge over the pair's path). Each unordered pair appears once,
    as src → src + direction; the walk uses it in both directions.
    """
    height, width = edge.shape
    flat_edge = edge.reshape(-1)
    pairs = PathIndex(radius).in_image_pairs(height, width)
    src = torch.cat([src for src, _, _ in pairs]).to(edge.device)
    dst = torch.cat([dst for _, dst, _ in pairs]).to(edge.device)
    aff = torch.cat([1 - flat_edge[cells.to(edge.device)].max(dim=0).values for _, _, cells in pairs])
    return src, dst, aff


def transition_matrix_transposed(edge, beta=10, radius=5, dtype=torch.float64):
    """Tᵀ as a sparse CSR (hw)×(hw) matrix, in `dtype`.

    A_ij = a_ij^beta for every in-image pair (both directions), A_ii = 1, all else 0; T = A with
    each column divided by its sum. Row j of Tᵀ is column j of T, so x·T = (Tᵀ·xᵀ)ᵀ is a
    CSR-times-dense product.
    """
    height, width = edge.shape
    size = height * width
    src, dst, aff = rw_affinity_pairs(edge.to(dtype), radius)
    diagonal = torch.arange(size, device=edge.device)
    rows = torch.cat([src, dst, diagonal])  # i of A_ij
    cols = torch.cat([dst, src, diagonal])  # j of A_ij
    weights = aff.pow(beta)
    values = torch.cat([weights, weights, torch.ones(size, dtype=dtype, device=edge.device)])
    column_sums = torch.zeros(size, dtype=dtype, device=edge.device).index_add_(0, cols, values)
    values = values / column_sums[cols]

    order = torch.argsort(cols * size + rows)  # Tᵀ row-major: by j, then i
    crow_indices = torch.zeros(size + 1, dtype=torch.int64, device=edge.device)
    crow_indices[1:] = torch.bincount(cols, minlength=size).cumsum(0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow_indices, rows[order], values[order], (size, size),
                                       check_invariants=False)


def random_walk(cams, edge, beta=10, exp_times=8, radius=5):
    """x·T^(2^exp_times) with x = cams·(1 − edge), for each class map (SPEC §6.6).

    cams: K×h×w foreground CAMs (strided), edge: h×w edge probabilities, same device. Returns the
    K×h×w walk in cams' dtype, before upsampling and normalisation. Computed in float64: 256
    float32 products drift ~1e-4 from the exact walk (more than the dense float32 squaring's ~2e-5).
    """
    count, height, width = cams.shape
    transposed = transition_matrix_transposed(edge, beta, radius)
    walk = (cams * (1 - edge)).reshape(count, height * width).t().to(torch.float64).contiguous()
    for _ in range(2 ** exp_times):
        walk = transposed @ walk
    return walk.t().reshape(count, height, width).to(cams.dtype)


def normalise_rw(rw):
    """Divide by the global max over all classes and pixels; an all-zero walk stays zero.

    The published code divides 0 by 0 here and writes an all-NaN map (SPEC §6.6: not copied).
    """
    if rw.numel() == 0 or rw.max() <= 0:
        return rw.clone()
    return rw / rw.max()
