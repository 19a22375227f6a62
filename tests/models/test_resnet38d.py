import pytest
import torch
import torch.nn.functional as F
from batchnorm_checks import batch_norm, randomise_batchnorm
from torch import nn

from wsss.models.resnet38d import (
    CPN_FROZEN_MODULES,
    BottleneckBlock,
    ResBlock,
    ResNet38d,
    load_weights,
    torch_key_from_mxnet,
)

BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
# (module, MXNet block name, kind, has a projection shortcut), in the published order
BLOCKS = [("b2", "2a", "res", True), ("b2_1", "2b1", "res", False), ("b2_2", "2b2", "res", False),
          ("b3", "3a", "res", True), ("b3_1", "3b1", "res", False), ("b3_2", "3b2", "res", False),
          ("b4", "4a", "res", True)] + [(f"b4_{i}", f"4b{i}", "res", False) for i in range(1, 6)] + [
          ("b5", "5a", "res", True), ("b5_1", "5b1", "res", False), ("b5_2", "5b2", "res", False),
          ("b6", "6a", "bot", True), ("b7", "7a", "bot", True)]


def published_keys():
    """The state-dict keys of the published ResNet-38, written out from its layer list."""
    keys = ["conv1a.weight"]
    for module, _, kind, projection in BLOCKS:
        keys += [f"{module}.bn_branch2a.{key}" for key in BN_KEYS] + [f"{module}.conv_branch2a.weight"]
        keys += [f"{module}.bn_branch2b1.{key}" for key in BN_KEYS] + [f"{module}.conv_branch2b1.weight"]
        if kind == "bot":
            keys += [f"{module}.bn_branch2b2.{key}" for key in BN_KEYS] + [f"{module}.conv_branch2b2.weight"]
        if projection:
            keys.append(f"{module}.conv_branch1.weight")
    return keys + [f"bn7.{key}" for key in BN_KEYS]


@pytest.fixture(scope="module")
def trunk():
    torch.manual_seed(0)
    return ResNet38d(frozen_modules=CPN_FROZEN_MODULES)


def test_keys_and_shapes_are_the_published_ones(trunk):
    state = trunk.state_dict()
    assert list(state) == published_keys()
    assert state["conv1a.weight"].shape == (64, 3, 3, 3)
    assert state["b5.conv_branch2a.weight"].shape == (512, 512, 3, 3)
    assert trunk.b5.conv_branch2a.dilation == (1, 1) and trunk.b5.conv_branch2b1.dilation == (2, 2)
    assert trunk.b5_2.conv_branch2a.dilation == (2, 2)
    assert state["b6.conv_branch2b1.weight"].shape == (1024, 512, 3, 3) and trunk.b6.conv_branch2b1.dilation == (4, 4)
    assert state["b7.conv_branch2b2.weight"].shape == (4096, 2048, 1, 1)
    assert (trunk.b6.dropout_2b1.p, trunk.b7.dropout_2b2.p) == (0.3, 0.5)


def test_features_are_at_one_eighth(trunk):
    x = torch.randn(1, 3, 20, 9)
    trunk.eval()
    with torch.no_grad():
        features = trunk.forward_features(x)
        conv6 = trunk(x)
    assert features["conv4"].shape == (1, 512, 3, 2)  # ⌈20/8⌉ × ⌈9/8⌉
    assert features["conv5"].shape == (1, 1024, 3, 2)
    assert features["conv6"].shape == (1, 4096, 3, 2)
    assert torch.equal(conv6, features["conv6"]) and conv6.min() >= 0
    assert {key: value.shape[1] for key, value in features.items()} == ResNet38d.feature_channels


def test_blocks_are_pre_activation_with_the_raw_input_as_identity_shortcut():
    torch.manual_seed(1)
    x = torch.randn(2, 4, 6, 6)
    same = ResBlock(4, 3, 4, dilation=2).eval()
    projected = ResBlock(4, 3, 5, stride=2).eval()
    randomise_batchnorm(same)
    randomise_batchnorm(projected)
    out, activated = same(x)
    a = F.relu(batch_norm(same.bn_branch2a, x))
    inner = F.relu(batch_norm(same.bn_branch2b1, F.conv2d(a, same.conv_branch2a.weight, padding=2, dilation=2)))
    expected = x + F.conv2d(inner, same.conv_branch2b1.weight, padding=2, dilation=2)
    assert torch.allclose(out, expected, atol=1e-6) and torch.equal(activated, a)

    out, _ = projected(x)
    a = F.relu(batch_norm(projected.bn_branch2a, x))
    inner = F.relu(batch_norm(projected.bn_branch2b1, F.conv2d(a, projected.conv_branch2a.weight, stride=2, padding=1)))
    expected = F.conv2d(a, projected.conv_branch1.weight, stride=2) + F.conv2d(inner, projected.conv_branch2b1.weight,
                                                                               padding=1)
    assert out.shape == (2, 5, 3, 3) and torch.allclose(out, expected, atol=1e-6)


def test_bottleneck_block_in_eval_mode():
    torch.manual_seed(2)
    x = torch.randn(1, 8, 5, 5)
    block = BottleneckBlock(8, 16, dilation=4, dropout=0.5).eval()
    randomise_batchnorm(block)
    a = F.relu(batch_norm(block.bn_branch2a, x))
    r = F.relu(batch_norm(block.bn_branch2b1, F.conv2d(a, block.conv_branch2a.weight)))
    r = F.relu(batch_norm(block.bn_branch2b2, F.conv2d(r, block.conv_branch2b1.weight, padding=4, dilation=4)))
    expected = F.conv2d(a, block.conv_branch1.weight) + F.conv2d(r, block.conv_branch2b2.weight)
    assert block.conv_branch2a.weight.shape == (4, 8, 1, 1) and block.conv_branch2b1.weight.shape == (8, 4, 3, 3)
    assert torch.allclose(block(x)[0], expected, atol=1e-6)


def test_batchnorm_and_listed_modules_stay_frozen_through_train_calls(trunk):
    trunk.eval()
    trunk.train()
    batchnorms = [m for m in trunk.modules() if isinstance(m, nn.BatchNorm2d)]
    assert trunk.training and trunk.b7.dropout_2b2.training
    assert not any(bn.training or bn.weight.requires_grad or bn.bias.requires_grad for bn in batchnorms)
    frozen = {name for name, p in trunk.named_parameters() if not p.requires_grad}
    for name, parameter in trunk.named_parameters():
        module = name.split(".")[0]
        is_batchnorm = ".bn_" in name or module == "bn7"
        assert (name in frozen) == (module in CPN_FROZEN_MODULES or is_batchnorm), name
    before = trunk.b3.bn_branch2a.running_mean.clone()
    trunk(torch.randn(1, 3, 16, 16))  # training mode: running statistics must not move
    assert torch.equal(trunk.b3.bn_branch2a.running_mean, before)
    seam_default = ResNet38d()
    assert not seam_default.conv1a.weight.requires_grad and seam_default.b2.conv_branch2a.weight.requires_grad
    with pytest.raises(ValueError, match="b9"):
        ResNet38d(frozen_modules=("conv1a", "b9"))


def test_weights_round_trip_through_a_converted_style_file(trunk, tmp_path):
    state = {key: value for key, value in trunk.state_dict().items() if not key.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "ilsvrc.pth")
    other = ResNet38d()
    assert not torch.equal(other.b7.conv_branch1.weight, state["b7.conv_branch1.weight"])
    load_weights(other, tmp_path / "ilsvrc.pth")
    loaded = other.state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in state.items())


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 1)
        self.bn = nn.BatchNorm2d(3)


def test_load_weights_errors(tmp_path):
    missing = tmp_path / "absent" / "weights.pth"
    with pytest.raises(FileNotFoundError, match="absent/weights.pth"):
        load_weights(Small(), missing)
    state = Small().state_dict()
    torch.save({**state, "fc.weight": torch.zeros(1)}, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match=r"unexpected 1 \(e.g. \['fc.weight'\]\)"):
        load_weights(Small(), tmp_path / "extra.pth")
    torch.save({k: v for k, v in state.items() if k != "conv.bias"}, tmp_path / "short.pth")
    with pytest.raises(ValueError, match=r"missing 1 \(e.g. \['conv.bias'\]\)"):
        load_weights(Small(), tmp_path / "short.pth")
    torch.save({**state, "conv.weight": torch.zeros(3, 2, 3, 3)}, tmp_path / "shape.pth")
    with pytest.raises(ValueError, match=r"conv.weight \(3, 2, 3, 3\) instead of \(3, 2, 1, 1\)"):
        load_weights(Small(), tmp_path / "shape.pth")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="not a state dict"):
        load_weights(Small(), tmp_path / "list.pth")


def mxnet_names():
    """The parameter names of the MXNet ResNet-38 file (`arg:`/`aux:` as nd.load gives them)."""
    names = ["arg:conv1a_weight", "arg:linear1000_weight", "arg:linear1000_bias"]
    stats = lambda layer: [f"arg:{layer}_gamma", f"arg:{layer}_beta", f"aux:{layer}_moving_mean",
                           f"aux:{layer}_moving_var"]
    for _, block, kind, projection in BLOCKS:
        branches = ["branch2a", "branch2b1"] + (["branch2b2"] if kind == "bot" else [])
        for branch in branches:
            names += stats(f"bn{block}_{branch}") + [f"arg:res{block}_{branch}_weight"]
        if projection:
            names.append(f"arg:res{block}_branch1_weight")
    return names + stats("bn7")


def test_mxnet_names_map_onto_every_learned_key(trunk):
    mapped = [torch_key_from_mxnet(name) for name in mxnet_names()]
    assert mapped.count(None) == 2
    expected = [key for key in trunk.state_dict() if not key.endswith("num_batches_tracked")]
    assert sorted(key for key in mapped if key is not None) == sorted(expected)
    assert torch_key_from_mxnet("res4b5_branch2b1_weight") == "b4_5.conv_branch2b1.weight"
    assert torch_key_from_mxnet("aux:bn5a_branch2a_moving_var") == "b5.bn_branch2a.running_var"
    with pytest.raises(ValueError, match="fc_weight"):
        torch_key_from_mxnet("fc_weight")
