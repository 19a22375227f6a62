"""The puzzle module (docs/design.md §4): tile images into n×n pieces and merge piece features back."""
import math

import torch


def pieces_per_side(num_pieces):
    side = math.isqrt(num_pieces)
    if side * side != num_pieces:
        raise ValueError(f"num_pieces must be a square number, got {num_pieces}")
    return side


def tile(images, num_pieces):
    """B×C×H×W → (num_pieces·B)×C×(H//n)×(W//n), piece-major, pieces ordered row by row.

    Rows/columns beyond n·(H//n) are dropped (the published split fails on such sizes).
    """
    side = pieces_per_side(num_pieces)
    height, width = images.shape[2] // side, images.shape[3] // side
    pieces = [images[:, :, row * height:(row + 1) * height, col * width:(col + 1) * width]
              for row in range(side) for col in range(side)]
    return torch.cat(pieces, dim=0)


def merge(pieces, num_pieces, batch_size):
    """Inverse of `tile` on feature maps: chunks of `batch_size` re-assembled into the n×n grid.

    Quirk kept from the published code: the chunk size is the configured batch size.
    """
    side = pieces_per_side(num_pieces)
    chunks = torch.split(pieces, batch_size)
    rows = [torch.cat(chunks[row * side:(row + 1) * side], dim=3) for row in range(side)]
    return torch.cat(rows, dim=2)
