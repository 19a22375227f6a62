"""The published dense random walk (IRN's `propagate_to_edge`), kept as the reference for the tests
and the benchmark only: pad the edge map (right, left and bottom by `radius`, value 1), take the
training-form path index of the padded grid, scatter the pair affinities into a dense
(hw)×(hw) matrix of the in-image pixels, raise to beta, divide each column by its sum, square it
`exp_times` times, and multiply the masked CAMs by it.

Its pairs come from the padded training-form index, not from `affinity_stencil`, so it
checks the sparse walk's pair enumeration too.
"""
import torch
import torch.nn.functional as F

from wsss.algorithms.path_index import PathIndex, edge_to_affinity

__all__ = ["dense_random_walk"]


def dense_random_walk(cams, edge, beta=10, exp_times=8, radius=5):
    count, height, width = cams.shape
    padded_width = width + 2 * radius
    index = PathIndex(radius, (height + radius, padded_width))
    padded_edge = F.pad(edge, (radius, radius, 0, radius), value=1.0)
    path_indices = [indices.to(edge.device) for indices in index.path_indices]
    aff = edge_to_affinity(padded_edge[None], path_indices)[0].reshape(-1)
    src = index.src_indices.expand_as(index.dst_indices).reshape(-1).to(edge.device)
    dst = index.dst_indices.reshape(-1).to(edge.device)

    def to_image(flat):
        rows, cols = flat // padded_width, flat % padded_width - radius
        return rows * width + cols, (rows < height) & (cols >= 0) & (cols < width)

    (src, src_inside), (dst, dst_inside) = to_image(src), to_image(dst)
    inside = src_inside & dst_inside
    src, dst, aff = src[inside], dst[inside], aff[inside]

    size = height * width
    transition = torch.eye(size, dtype=edge.dtype, device=edge.device)
    transition[src, dst] = aff
    transition[dst, src] = aff
    transition.pow_(beta)
    transition.div_(transition.sum(dim=0, keepdim=True))
    for _ in range(exp_times):
        transition = transition @ transition
    masked = (cams * (1 - edge)).reshape(count, size)
    return (masked @ transition).reshape(count, height, width)
