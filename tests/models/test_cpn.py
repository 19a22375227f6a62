import math

import pytest
import torch
import torch.nn.functional as F
from batchnorm_checks import batch_norm, randomise_batchnorm
from torch import nn

from wsss.methods.cpn import use_frozen_batchnorm
from wsss.models.cpn import CPN, cpn_resnet38d, pcm, prcm, seed_map, spatial_gather
from wsss.models.resnet38d import BottleneckBlock, ResBlock, ResNet38d

HEAD_KEYS = ["fc8.weight", "f8_3.weight", "f8_4.weight", "f9.weight", "f10.weight"]


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    return cpn_resnet38d()


class PublishedLayout(ResNet38d):
    """The published class's layout: the CPN layers registered next to the trunk's, no prefix."""

    def __init__(self):
        super().__init__()
        self.fc8 = nn.Conv2d(4096, 21, 1, bias=False)
        self.f8_3 = nn.Conv2d(512, 64, 1, bias=False)
        self.f8_4 = nn.Conv2d(1024, 128, 1, bias=False)
        self.f9 = nn.Conv2d(195, 192, 1, bias=False)
        self.f10 = nn.Conv2d(195, 192, 1, bias=False)


def test_state_dict_keys_are_the_published_network_keys(network):
    state = network.state_dict()
    trunk_keys = list(ResNet38d().state_dict())
    assert list(state) == trunk_keys + HEAD_KEYS
    assert [tuple(state[key].shape) for key in HEAD_KEYS] == [(21, 4096, 1, 1), (64, 512, 1, 1), (128, 1024, 1, 1),
                                                             (192, 195, 1, 1), (192, 195, 1, 1)]
    assert "b2.bn_branch2a" in state._metadata and not any(key.startswith("backbone") for key in state._metadata)
    assert next(network.named_parameters())[0] == "backbone.conv1a.weight"


def test_checkpoints_interchange_with_the_published_layout(network):
    published = PublishedLayout()
    published.load_state_dict(network.state_dict(), strict=True)
    assert torch.equal(published.b4_3.conv_branch2a.weight, network.backbone.b4_3.conv_branch2a.weight)
    assert torch.equal(published.f10.weight, network.f10.weight)

    ours = cpn_resnet38d()
    assert not torch.equal(ours.fc8.weight, published.fc8.weight)
    ours.load_state_dict(published.state_dict(), strict=True)
    assert torch.equal(ours.backbone.bn7.running_var, published.bn7.running_var)
    assert torch.equal(ours.fc8.weight, published.fc8.weight)
    with pytest.raises(RuntimeError, match="Unexpected key.*extra.weight"):
        ours.load_state_dict({**published.state_dict(), "extra.weight": torch.zeros(1)})

    wrapped = nn.Sequential(network)  # a wrapper's prefix ("0.", like DDP's "module.") is kept
    assert next(iter(wrapped.state_dict())) == "0.conv1a.weight"
    nn.Sequential(ours).load_state_dict(wrapped.state_dict())
    assert torch.equal(ours.fc8.weight, network.fc8.weight)


def test_seed_map_against_a_direct_formulation():
    torch.manual_seed(3)
    cam = torch.randn(2, 21, 3, 4) * 3
    cam[0, 5, 1, 2] = cam[0, 7, 1, 2] = 50.0  # a tie for the strongest foreground class
    seed = seed_map(cam)
    expected = torch.zeros_like(cam)
    for n in range(2):
        positive = cam[n].clamp(min=0)
        normalised = [(positive[c] - 1e-5).clamp(min=0) / (positive[c].max() + 1e-5) for c in range(21)]
        for i in range(3):
            for j in range(4):
                strongest = max(float(normalised[c][i, j]) for c in range(1, 21))
                expected[n, 0, i, j] = 1 - strongest
                for c in range(1, 21):
                    value = float(normalised[c][i, j])
                    expected[n, c, i, j] = value if value >= strongest else 0.0
    assert torch.allclose(seed, expected, atol=1e-6)
    assert seed[0, 5, 1, 2] > 0 and seed[0, 7, 1, 2] > 0
    assert not seed_map(cam.requires_grad_()).requires_grad


def test_spatial_gather_against_a_direct_formulation():
    torch.manual_seed(4)
    features, probabilities = torch.randn(2, 5, 3, 3), torch.randn(2, 21, 3, 3)
    context = spatial_gather(features, probabilities)
    assert context.shape == (2, 5, 21, 1)
    for n in range(2):
        for k in range(21):
            weights = torch.exp(probabilities[n, k].flatten()) / torch.exp(probabilities[n, k].flatten()).sum()
            for ch in range(5):
                assert torch.isclose(context[n, ch, k, 0], (weights * features[n, ch].flatten()).sum(), atol=1e-6)


def test_pcm_against_a_direct_formulation():
    torch.manual_seed(5)
    features, seed = torch.randn(1, 4, 2, 3), torch.rand(1, 21, 2, 3)
    f9 = nn.Conv2d(4, 3, 1, bias=False).requires_grad_(False)
    out = pcm(seed, features, f9)
    w = f9.weight[:, :, 0, 0]
    pixels = [features[0, :, i, j] for i in range(2) for j in range(3)]
    embedded = [w @ p for p in pixels]
    embedded = [g / (g.norm() + 1e-5) for g in embedded]
    affinity = torch.tensor([[max(float(a @ b), 0.0) for b in embedded] for a in embedded])
    column_sums = affinity.sum(dim=0)
    expected = torch.zeros(21, 6)
    for k in range(21):
        for q in range(6):  # output pixel q gathers from every pixel p, weighted by A[p, q] / Σ_p' A[p', q]
            expected[k, q] = sum(seed[0, k].flatten()[p] * affinity[p, q] / (column_sums[q] + 1e-5) for p in range(6))
    assert torch.allclose(out[0].flatten(1), expected, atol=1e-5)


def test_pcm_divides_in_place_only_when_no_gradient_is_recorded():
    torch.manual_seed(6)
    features, seed = torch.randn(2, 5, 3, 4), torch.rand(2, 21, 3, 4)
    f9 = nn.Conv2d(5, 4, 1, bias=False)
    with torch.no_grad():
        inference = pcm(seed, features, f9)
    training = pcm(seed, features, f9)
    assert torch.equal(inference, training)
    training.square().sum().backward()  # relu keeps A for its backward: an in-place division would fail here
    assert f9.weight.grad.abs().sum() > 0


def direct_prcm(context, features, f9, f10, transpose=False):
    """PRCM written per element; `transpose=True` is what a (wrong) transpose of the key would give."""
    _, channels, k_count, _ = context.shape
    embed = f9.weight.shape[0]
    h, w = features.shape[2:]
    query = torch.relu(torch.einsum("ec,cp->ep", f9.weight[:, :, 0, 0], features[0].flatten(1)))
    raw_key = torch.relu(torch.einsum("ec,ck->ek", f10.weight[:, :, 0, 0], context[0, :, :, 0]))  # embed×21
    key = torch.zeros(21, embed)
    for row in range(21):
        for col in range(embed):
            if transpose:
                key[row, col] = raw_key[col, row]
            else:  # row-major reading of the embed×21 array as 21×embed
                flat = row * embed + col
                key[row, col] = raw_key[flat // k_count, flat % k_count]
    similarity = key @ query / math.sqrt(21)
    return torch.softmax(similarity, dim=-1).view(1, 21, h, w)


def test_prcm_reshapes_the_key_instead_of_transposing_it():
    torch.manual_seed(6)
    features, context = torch.randn(1, 4, 2, 3), torch.randn(1, 4, 21, 1)
    f9, f10 = nn.Conv2d(4, 3, 1, bias=False), nn.Conv2d(4, 3, 1, bias=False)
    out = prcm(context, features, f9, f10)
    assert torch.allclose(out, direct_prcm(context, features, f9, f10), atol=1e-6)
    transposed = direct_prcm(context, features, f9, f10, transpose=True)
    assert (out - transposed).abs().max() > 1e-2  # the test above would fail for a transpose
    assert torch.allclose(out.sum(dim=(2, 3)), torch.ones(1, 21), atol=1e-6)


class StubTrunk(nn.Module):
    """Fixed features from learnable tensors, with small channel counts: CPN works on any trunk."""

    feature_channels = {"conv4": 5, "conv5": 6, "conv6": 7}

    def __init__(self, size=(3, 4)):
        super().__init__()
        self.conv4 = nn.Parameter(torch.randn(1, 5, *size))
        self.conv5 = nn.Parameter(torch.randn(1, 6, *size))
        self.conv6 = nn.Parameter(torch.randn(1, 7, *size).relu())
        self.gn = nn.GroupNorm(1, 7)
        self.biased = nn.Conv2d(7, 7, 1)

    def forward_features(self, x):
        return {"conv4": self.conv4, "conv5": self.conv5, "conv6": self.conv6}


def test_forward_composes_the_heads_and_detaches_seed_and_trunk_features():
    torch.manual_seed(7)
    network = CPN(StubTrunk()).eval()
    x = torch.randn(1, 3, 9, 13)
    cam, cam_rv = network(x)
    trunk = network.backbone
    raw = network.fc8(trunk.conv6)
    seed = seed_map(raw)
    features = torch.cat([F.interpolate(x, (3, 4), mode="bilinear", align_corners=True),
                          torch.relu(network.f8_3(trunk.conv4)), torch.relu(network.f8_4(trunk.conv5))], dim=1)
    refined = pcm(seed, features, network.f9) + prcm(spatial_gather(features, seed), features, network.f9,
                                                     network.f10) * seed
    assert torch.allclose(cam, F.interpolate(raw, (9, 13), mode="bilinear", align_corners=True), atol=1e-6)
    assert torch.allclose(cam_rv, F.interpolate(refined, (9, 13), mode="bilinear", align_corners=True), atol=1e-6)

    cam_rv.sum().backward()
    assert trunk.conv4.grad is None and trunk.conv5.grad is None  # detached before f8_3 / f8_4
    assert network.fc8.weight.grad is None  # the seed carries no gradient
    assert network.f9.weight.grad is not None and network.f8_3.weight.grad is not None


def test_parameter_groups_as_published(network):
    groups = network.parameter_groups()
    trunk_convs = [m.weight for name, m in network.backbone.named_modules()
                   if isinstance(m, nn.Conv2d) and name.split(".")[0] not in ("conv1a", "b2", "b2_1", "b2_2")]
    assert len(trunk_convs) == 35
    assert [id(p) for p in groups[0]] == [id(p) for p in trunk_convs]
    assert groups[1] == [] and groups[3] == []
    assert {id(p) for p in groups[2]} == {id(network.fc8.weight), id(network.f8_3.weight), id(network.f8_4.weight),
                                          id(network.f9.weight), id(network.f10.weight)}

    stub = CPN(StubTrunk())
    groups = stub.parameter_groups()
    assert [id(p) for p in groups[0]] == [id(stub.backbone.gn.weight), id(stub.backbone.biased.weight)]
    assert [id(p) for p in groups[1]] == [id(stub.backbone.gn.bias), id(stub.backbone.biased.bias)]


def test_features_of_different_sizes_are_refused():
    class Uneven(StubTrunk):
        def forward_features(self, x):
            return {**super().forward_features(x), "conv4": torch.zeros(1, 5, 2, 2)}

    with pytest.raises(ValueError, match=r"conv4 \(2, 2\)"):
        CPN(Uneven())(torch.zeros(1, 3, 8, 8))


def test_resnet38d_forward_shapes_and_frozen_layers(network):
    network.train()
    cam, cam_rv = network(torch.randn(2, 3, 20, 17))
    assert cam.shape == cam_rv.shape == (2, 21, 20, 17)
    assert not network.backbone.b2_2.conv_branch2b1.weight.requires_grad
    assert not network.backbone.b3.bn_branch2a.training and network.dropout7.training


def plain_block(block, x):
    """A ResNet-38 block written out of place (fresh tensors for every ReLU and the residual sum);
    its batch norms in the block's mode, its dropout left out (the test sets p = 0 when training)."""
    def bn(layer, z):
        return batch_norm(layer, z, block.training)

    activated = F.relu(bn(block.bn_branch2a, x))
    shortcut = block.conv_branch1(activated) if hasattr(block, "conv_branch1") else x
    residual = block.conv_branch2b1(F.relu(bn(block.bn_branch2b1, block.conv_branch2a(activated))))
    if hasattr(block, "bn_branch2b2"):
        residual = block.conv_branch2b2(F.relu(bn(block.bn_branch2b2, residual)))
    return shortcut + residual, activated


@pytest.mark.parametrize("norm", ["BatchNorm2d", "FrozenBatchNorm2d", "batch statistics"])
@pytest.mark.parametrize("make_block", [lambda: ResBlock(4, 3, 4, dilation=2), lambda: ResBlock(4, 3, 6, stride=2),
                                        lambda: BottleneckBlock(4, 8, dilation=4, dropout=0.5)],
                         ids=["identity", "projection", "bottleneck"])
def test_in_place_blocks_keep_the_out_of_place_values_and_gradients(make_block, norm):
    """The blocks' ReLUs and residual sums run in place: the same values, bitwise, as fresh tensors,
    and autograd still has what it needs: ResNet-38's set-up (frozen batch norm in eval mode, as
    nn.BatchNorm2d or FrozenBatchNorm2d) and batch norm on batch statistics with trained affine
    parameters (a registered trunk under `--mode normal`)."""
    torch.manual_seed(3)
    block = make_block().eval()
    randomise_batchnorm(block, trainable=norm == "batch statistics")
    for module in block.modules():
        if isinstance(module, nn.Dropout2d):
            module.p = 0.0
    if norm == "FrozenBatchNorm2d":
        use_frozen_batchnorm(block)
    block.train(norm == "batch statistics")
    x = torch.randn(2, 4, 7, 6, requires_grad=True)
    out, activated = block(x)
    expected, expected_activated = plain_block(block, x)
    assert torch.equal(out, expected) and torch.equal(activated, expected_activated)
    inputs = (x, block.conv_branch2a.weight) + ((block.bn_branch2a.weight,) if norm == "batch statistics" else ())
    gradients = torch.autograd.grad(out.square().sum() + activated.sum(), inputs)
    expected_gradients = torch.autograd.grad(expected.square().sum() + expected_activated.sum(), inputs)
    for gradient, expected_gradient in zip(gradients, expected_gradients):
        assert expected_gradient.abs().sum() > 0
        assert torch.allclose(gradient, expected_gradient, rtol=0, atol=1e-6 * expected_gradient.abs().max())
