import torch

from wsss.algorithms.puzzle import merge, tile


def test_tile_orders_pieces_row_by_row_and_piece_major():
    images = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
    pieces = tile(images, 4)
    assert pieces.shape == (8, 1, 2, 2)
    # piece 0 of image 0 and 1, then piece 1 (top right) of both, ...
    assert torch.equal(pieces[0, 0], torch.tensor([[0., 1.], [4., 5.]]))
    assert torch.equal(pieces[1, 0], torch.tensor([[16., 17.], [20., 21.]]))
    assert torch.equal(pieces[2, 0], torch.tensor([[2., 3.], [6., 7.]]))
    assert torch.equal(pieces[4, 0], torch.tensor([[8., 9.], [12., 13.]]))
    assert torch.equal(pieces[7, 0], torch.tensor([[26., 27.], [30., 31.]]))


def test_merge_is_the_exact_inverse_of_tile():
    images = torch.randn(3, 5, 12, 18)
    for num_pieces in (1, 4, 9):
        assert torch.equal(merge(tile(images, num_pieces), num_pieces, 3), images)


def test_odd_sizes_drop_the_remainder_and_invert_on_the_rest():
    images = torch.randn(2, 3, 13, 9)
    pieces = tile(images, 4)
    assert pieces.shape == (8, 3, 6, 4)
    assert torch.equal(merge(pieces, 4, 2), images[:, :, :12, :8])


def test_merge_uses_the_configured_batch_size_as_chunk():
    images = torch.randn(4, 2, 8, 8)
    pieces = tile(images, 4)
    # the published quirk: chunks are split by the configured batch size
    assert torch.equal(merge(pieces, 4, 4), images)
