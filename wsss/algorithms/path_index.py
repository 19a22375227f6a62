"""The IRN path index (docs/design.md §6.5): search directions, the grid cells on each direction's path, and
the flat pixel indices that turn an edge map into pair affinities with tensor gathers.

A direction (dy, dx) joins pixel p to p + (dy, dx); the directions cover a half-plane, so every
unordered pair of pixels closer than `radius` appears exactly once. The affinity of a pair is
1 − max of the edge probability over the cells of its path (source and destination included).

Training (`PathIndex(radius, grid_size)`, radius 10 on the 128×128 label grid) uses one fixed set of
sources, rows 0…H−r and columns r−1…W−r, for which every destination lies on the grid. The random
walk takes every pair of in-image pixels instead (wsss/algorithms/random_walk.py builds those from
`search_directions` and `path_cells`).
"""
import itertools

import numpy as np
import torch

__all__ = ["PathIndex", "search_directions", "path_cells", "edge_to_affinity"]


def search_directions(radius):
    """(0, x) for x = 1…r−1, then (y, x) for y = 1…r−1, x = −(r−1)…r−1, keeping x² + y² < r²."""
    directions = [(0, x) for x in range(1, radius)]
    directions += [(y, x) for y in range(1, radius) for x in range(-radius + 1, radius)
                   if x * x + y * y < radius * radius]
    return directions


def path_cells(direction):
    """The (y, x) cells of a direction's path: cells of the box between (0, 0) and (dy, dx) whose
    distance to the segment is below 1, i.e. (dy·x − dx·y)² / (dy² + dx²) < 1.

    Ordered as IRN orders them (farthest first by |y| + |x|, ties in row-major order), so the first
    cell is the destination and the last the source; the order does not change the max over a path
    but makes our `path_indices` buffers equal, value for value, to the published checkpoints'.
    """
    dy, dx = direction
    length_sq = dy * dy + dx * dx
    cells = [(y, x)
             for y in range(min(0, dy), max(0, dy) + 1)
             for x in range(min(0, dx), max(0, dx) + 1)
             if (dy * x - dx * y) ** 2 < length_sq]
    return sorted(cells, key=lambda cell: -abs(cell[0]) - abs(cell[1]))


class PathIndex:
    """Search directions of `radius`, grouped by path length, and (given `grid_size` = (H, W)) the
    training pairs' flat indices into an H×W map.

    Grouping, as IRN: directions with the same number of path cells form a group; groups come in
    increasing path length, directions within a group in search order. `pair_directions` lists the
    directions in this group order (n_directions × 2): it is the order of the pair axis everywhere.

    Training form (the published AffinityNet registers `path_indices[g]` as buffer `path_indices_{g}`):
    - `path_indices[g]`: int64 tensor [directions in group g, path length of g, n_src]: the flat index
      (y·W + x, into the unpadded H×W edge map) of each path cell of each direction for each source,
      path cells in `path_cells` order (destination first);
    - `src_indices`: int64 [n_src], the sources (rows 0…H−r, columns r−1…W−r, row-major);
      n_src = (H − r + 1)·(W − 2r + 2);
    - `dst_indices`: int64 [n_directions, n_src], the destination of each direction (group order)
      for each source; pair (d, s) joins src_indices[s] and dst_indices[d, s].
    """

    def __init__(self, radius, grid_size=None):
        self.radius = radius
        self.directions = search_directions(radius)
        lengths = [len(path_cells(direction)) for direction in self.directions]
        order = sorted(range(len(self.directions)), key=lambda index: lengths[index])  # stable
        self.groups = [[self.directions[index] for index in members]
                       for _, members in itertools.groupby(order, key=lambda index: lengths[index])]
        self.pair_directions = np.array([direction for group in self.groups for direction in group],
                                        dtype=np.int64)
        if grid_size is not None:
            self.path_indices, self.src_indices, self.dst_indices = self._training_indices(*grid_size)

    def _training_indices(self, height, width):
        margin = self.radius - 1
        rows, cols = height - margin, width - 2 * margin
        if rows <= 0 or cols <= 0:
            raise ValueError(f"grid {height}×{width} is too small for radius {self.radius}")
        flat = torch.arange(height * width, dtype=torch.int64).view(height, width)
        path_indices = [torch.stack([torch.stack([_window(flat, y, margin + x, rows, cols)
                                                  for y, x in path_cells(direction)])
                                     for direction in group])
                        for group in self.groups]
        src_indices = _window(flat, 0, margin, rows, cols)
        dst_indices = torch.cat([group[:, 0] for group in path_indices])
        return path_indices, src_indices, dst_indices


def _window(flat, top, left, rows, cols):
    """Flat indices of the rows×cols window of the index grid `flat` at (top, left), row-major."""
    return flat[top:top + rows, left:left + cols].reshape(-1)


def edge_to_affinity(edge, path_indices):
    """Pair affinities 1 − max(edge over the path) for the training pairs of a `PathIndex`.

    edge: B×1×H×W or B×H×W edge probabilities (on the indices' device); path_indices: the list of
    per-group index tensors. Returns B × n_directions × n_src, pair axis in `pair_directions` order.
    """
    edge = edge.reshape(edge.shape[0], -1)
    affinities = []
    for indices in path_indices:
        along_paths = edge.index_select(1, indices.reshape(-1)).view(edge.shape[0], *indices.shape)
        affinities.append(1 - along_paths.max(dim=2).values)
    return torch.cat(affinities, dim=1)
