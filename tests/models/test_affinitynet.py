"""AffinityNet (docs/design.md §3.2, §6.4–6.6): frozen backbone, checkpoint layout, the flip-averaged edge
map and the per-image random walk."""
import re

import pytest
import torch
import torch.nn.functional as F

from wsss.algorithms.cam import strided_size
from wsss.algorithms.path_index import PathIndex, path_cells
from wsss.models.affinitynet import CANVAS, AffinityNet
from wsss.stages.affinity import load_affinitynet, random_walk_maps


def small_model(grid=16, seed=0):
    torch.manual_seed(seed)
    return AffinityNet("resnet_mini", pretrained="none", path_index=PathIndex(10, (grid, grid)))


def test_one_training_step_changes_only_the_edge_layers():
    model = small_model(grid=24).train()
    assert not any(module.training for module in model.backbone.modules())
    leaves = [module for module in model.model.modules() if not list(module.children())]
    assert leaves and not any(module.training for module in leaves)
    assert all(module.training for module in model.edge_layers.modules())
    edge_names = {name for name, _ in model.named_parameters() if name.startswith("fc_edge")}
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    # every parameter to the optimizer: only the frozen flags and the detach keep the backbone fixed
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.9, weight_decay=1e-4)
    torch.manual_seed(1)
    images = torch.randn(2, 3, 96, 96)
    edge, affinities = model(images, with_affinity=True)
    assert edge.shape == (2, 1, 24, 24)
    assert affinities.shape == (2, len(model.path_index.directions), (24 - 9) * (24 - 18))
    loss = (affinities * torch.randn_like(affinities)).sum() + (edge * torch.randn_like(edge)).sum()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    after = model.state_dict()
    backbone_keys = [name for name in after if name.split(".")[0] in
                     {"model", "backbone", "stage1", "stage2", "stage3", "stage4", "stage5"}]
    assert any("running_mean" in name for name in backbone_keys)
    for name in backbone_keys:
        assert torch.equal(after[name], before[name]), name
    changed = [name for name in edge_names if not torch.equal(after[name], before[name])]
    assert {name.split(".")[0] for name in changed} == {f"fc_edge{i}" for i in range(1, 7)}
    assert {id(p) for p in model.trainable_parameters()} == {id(p) for p in model.parameters() if p.requires_grad}


def test_checkpoint_key_layout_and_path_index_buffers():
    grid = 32
    model = small_model(grid=grid)
    state = model.state_dict()
    prefixes = {key.split(".")[0] for key in state}
    groups = model.path_index.groups
    assert prefixes == ({"model", "backbone", "edge_layers"} | {f"stage{i}" for i in range(1, 6)}
                        | {f"fc_edge{i}" for i in range(1, 7)} | {f"path_indices_{g}" for g in range(len(groups))})
    assert {key.split(".")[1] for key in state if key.startswith("backbone.")} == {str(i) for i in range(5)}
    assert {key.split(".")[1] for key in state if key.startswith("edge_layers.")} == {str(i) for i in range(6)}
    assert "edge_layers.5.weight" in state and torch.equal(state["edge_layers.5.weight"], state["fc_edge6.weight"])
    assert torch.equal(state["backbone.0.0.weight"], state["model.conv1.weight"])
    assert torch.equal(state["stage1.0.weight"], state["model.conv1.weight"])
    n_src = (grid - 9) * (grid - 18)
    for index, group in enumerate(groups):
        buffer = state[f"path_indices_{index}"]
        assert buffer.dtype == torch.int64
        assert tuple(buffer.shape) == (len(group), len(path_cells(group[0])), n_src)
        assert all(len(path_cells(direction)) == buffer.shape[1] for direction in group)
    assert sum(len(group) for group in groups) == len(model.path_index.directions)
    assert re.fullmatch(r"path_indices_\d+", max(k for k in state if k.startswith("path_indices_")))


def test_saved_affinitynet_reloads_on_a_non_default_grid(tmp_path):
    model = small_model(grid=32, seed=3).eval()
    with torch.no_grad():  # make the edge layers clearly non-default
        for parameter in model.edge_layers.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    path = tmp_path / "aff.pth"
    torch.save(model.state_dict(), path)
    loaded = load_affinitynet("resnet_mini", path).eval()
    for index in range(model.n_path_groups):
        assert torch.equal(getattr(loaded, f"path_indices_{index}"), getattr(model, f"path_indices_{index}"))
    torch.manual_seed(4)
    image = torch.randn(3, 50, 70)
    expected = model.edge_map(image)
    assert expected.shape == strided_size(50, 70)
    assert torch.equal(loaded.edge_map(image), expected)
    fresh = small_model(grid=32, seed=5).eval()
    assert not torch.allclose(fresh.edge_map(image), expected)


def test_published_grid_is_recovered_from_a_checkpoint(tmp_path):
    for grid in (24, 41):
        path = tmp_path / f"aff{grid}.pth"
        torch.save(small_model(grid=grid).state_dict(), path)
        loaded = load_affinitynet("resnet_mini", path)
        assert loaded.path_indices_0.shape[-1] == (grid - 9) * (grid - 18)


def pooled_channel0(batch, with_affinity=False):
    """A deterministic, left-right asymmetric stand-in for the edge branch: 1/4-scale logits."""
    return F.avg_pool2d(batch[:, :1], 4) * 3.0


def test_edge_map_flip_is_aligned_with_the_image(monkeypatch):
    model = small_model(grid=24).eval()
    monkeypatch.setattr(model, "forward", pooled_channel0)
    height, width = 70, 110
    torch.manual_seed(6)
    image = torch.rand(3, height, width) + torch.linspace(0, 2, width)  # asymmetric
    rows, cols = strided_size(height, width)
    padded = F.pad(torch.stack([image, image.flip(-1)]), [0, CANVAS - width, 0, CANVAS - height])
    logits = pooled_channel0(padded)[:, 0]
    e0, e1 = logits[0, :rows, :cols], logits[1, :rows, :cols]
    expected = torch.sigmoid(e0 / 2 + e1.flip(-1) / 2)
    result = model.edge_map(image)
    assert result.shape == (rows, cols) == (18, 28)
    assert torch.allclose(result, expected, atol=1e-6)
    # flipping the whole canvas before cropping reads the padding: a different, wrong map
    wrong = torch.sigmoid(e0 / 2 + logits[1].flip(-1)[:rows, :cols] / 2)
    assert (wrong - result).abs().max() > 0.1
    # and the flipped pass is not the unflipped one (the stand-in is asymmetric)
    assert (torch.sigmoid(e0) - result).abs().max() > 0.01


def test_edge_map_of_an_image_wider_than_the_canvas():
    model = small_model(grid=24).eval()
    torch.manual_seed(7)
    result = model.edge_map(torch.randn(3, 40, 530))
    assert result.shape == strided_size(40, 530) == (10, 133)
    assert torch.isfinite(result).all() and (result > 0).all() and (result < 1).all()


def test_edge_map_canvas_grows_to_a_multiple_of_16(monkeypatch):
    model = small_model(grid=24).eval()
    shapes = []

    def recording(batch, with_affinity=False):
        shapes.append(tuple(batch.shape))
        return pooled_channel0(batch)

    monkeypatch.setattr(model, "forward", recording)
    model.edge_map(torch.randn(3, 40, 530))
    assert shapes == [(2, 3, 512, 544)]


@pytest.mark.parametrize("size", [(40, 48), (33, 57)])
def test_random_walk_maps_zero_and_normalised(size):
    model = small_model(grid=24).eval()
    height, width = size
    torch.manual_seed(8)
    image = torch.randn(3, height, width)
    rows, cols = strided_size(height, width)
    zero = random_walk_maps(model, image, torch.zeros(2, rows, cols), beta=10, exp_times=3)
    assert zero.shape == (2, height, width)
    assert not torch.isnan(zero).any() and torch.count_nonzero(zero) == 0
    cams = torch.rand(2, rows, cols)
    cams[1] *= 0.5
    rw = random_walk_maps(model, image, cams, beta=10, exp_times=3)
    assert rw.shape == (2, height, width)
    assert torch.isfinite(rw).all() and rw.min() >= 0
    assert rw.max().item() == pytest.approx(1.0, abs=1e-6)
