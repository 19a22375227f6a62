"""The random walk of inference_rw (docs/design.md §6.6) as sparse products.

The published code builds the dense (hw)×(hw) transition matrix T and squares it `exp_times`
times. T has at most 69 non-zeros per column at radius 5 (the pixel itself and the 2 × 34 pixels
one search direction away), so here x·T^(2^exp_times) is computed as 2^exp_times products of x with
a sparse T: same numbers, a fraction of the time and memory (bench/bench_random_walk.py, results in
bench/results/random_walk.md).
"""
import warnings

import torch

from wsss.algorithms.path_index import path_cells, search_directions

__all__ = ["stencil_offsets", "affinity_stencil", "transition_matrix_transposed", "random_walk", "normalise_rw"]


def stencil_offsets(radius):
    """(0, 0), every search direction of `radius` and its opposite, sorted by (dy, dx)."""
    directions = search_directions(radius)
    return sorted([(0, 0)] + directions + [(-dy, -dx) for dy, dx in directions])


def affinity_stencil(edge, radius=5):
    """Every in-image pair's affinity, seen from each of its two pixels.

    edge: h×w edge probabilities. Returns (offsets, stencil, inside): `stencil[y, x, k]` is the
    affinity between pixel (y, x) and (y, x) + offsets[k], i.e. 1 − max of the edge over the path of
    the pair (the same path seen from either end), and 1 for the offset (0, 0); `inside[y, x, k]`
    says whether that other pixel is in the image (where it is not, stencil is 0). Pixel-major, so
    that the stencil reshaped to hw × len(offsets) holds the rows of the sparse transition matrix.
    """
    height, width = edge.shape
    offsets = stencil_offsets(radius)
    slot = {offset: k for k, offset in enumerate(offsets)}
    stencil = edge.new_zeros(height, width, len(offsets))
    stencil[:, :, slot[(0, 0)]] = 1
    for dy, dx in search_directions(radius):
        rows, left, cols = height - dy, max(0, -dx), width - abs(dx)
        if rows <= 0 or cols <= 0:
            continue
        path_max = torch.stack([edge[y:y + rows, left + x:left + x + cols]
                                for y, x in path_cells((dy, dx))]).amax(dim=0)
        stencil[:rows, left:left + cols, slot[(dy, dx)]] = 1 - path_max  # seen from the source
        stencil[dy:, left + dx:left + dx + cols, slot[(-dy, -dx)]] = 1 - path_max  # from the destination
    y = torch.arange(height, device=edge.device)[:, None, None]
    x = torch.arange(width, device=edge.device)[None, :, None]
    dy, dx = torch.tensor(offsets, device=edge.device).t()
    inside = (y + dy >= 0) & (y + dy < height) & (x + dx >= 0) & (x + dx < width)
    return offsets, stencil, inside


def transition_matrix_transposed(edge, beta=10, radius=5, dtype=torch.float64):
    """Tᵀ as a sparse CSR (hw)×(hw) matrix, in `dtype`.

    A_ij = a_ij^beta for every in-image pair (both directions), A_ii = 1, all else 0; T = A with
    each column divided by its sum. Row j of Tᵀ is column j of T, so x·T = (Tᵀ·xᵀ)ᵀ is a
    CSR-times-dense product. Row j holds T_(j+o),j = stencil at j and o / its sum for each offset o
    whose pixel is in the image; offsets sorted by (dy, dx) put the columns j + o in increasing order.
    """
    height, width = edge.shape
    size = height * width
    offsets, weights, inside = affinity_stencil(edge.to(dtype), radius)
    weights.pow_(beta).mul_(inside)  # in place: the stencil is the largest array here
    weights.div_(weights.sum(dim=2, keepdim=True))
    flat_offsets = torch.tensor([dy * width + dx for dy, dx in offsets], dtype=torch.int32, device=edge.device)
    columns = torch.arange(size, dtype=torch.int32, device=edge.device)[:, None] + flat_offsets
    crow_indices = torch.zeros(size + 1, dtype=torch.int32, device=edge.device)
    crow_indices[1:] = inside.reshape(size, -1).sum(dim=1).cumsum(dim=0)
    inside = inside.reshape(-1)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow_indices, columns.reshape(-1)[inside], weights.reshape(-1)[inside],
                                       (size, size), check_invariants=False)


def random_walk(cams, edge, beta=10, exp_times=8, radius=5):
    """x·T^(2^exp_times) with x = cams·(1 − edge), for each class map (docs/design.md §6.6).

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

    The published code divides 0 by 0 here and writes an all-NaN map (docs/design.md §6.6: not copied).
    """
    if rw.numel() == 0 or rw.max() <= 0:
        return rw.clone()
    return rw / rw.max()
