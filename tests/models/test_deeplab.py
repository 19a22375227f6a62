import pytest
import torch
from torch import nn

from wsss.models.backbones import FixedBatchNorm, parameter_groups
from wsss.models.deeplab import DeepLabv3Plus
from wsss.models.segmentation_models import build_segmentation_model
from wsss.utils.errors import StageError
from wsss.utils.files import load_weights, save_checkpoint

HEAD_KEYS = [
    "aspp.aspp1.atrous_conv.weight", "aspp.aspp1.bn.weight", "aspp.aspp1.bn.bias",
    "aspp.aspp2.atrous_conv.weight", "aspp.aspp2.bn.weight", "aspp.aspp2.bn.bias",
    "aspp.aspp3.atrous_conv.weight", "aspp.aspp3.bn.weight", "aspp.aspp3.bn.bias",
    "aspp.aspp4.atrous_conv.weight", "aspp.aspp4.bn.weight", "aspp.aspp4.bn.bias",
    "aspp.global_avg_pool.1.weight", "aspp.global_avg_pool.2.weight", "aspp.global_avg_pool.2.bias",
    "aspp.conv1.weight", "aspp.bn1.weight", "aspp.bn1.bias",
    "decoder.conv1.weight", "decoder.bn1.weight", "decoder.bn1.bias",
    "decoder.classifier.0.weight", "decoder.classifier.1.weight", "decoder.classifier.1.bias",
    "decoder.classifier.4.weight", "decoder.classifier.5.weight", "decoder.classifier.5.bias",
    "decoder.classifier.8.weight", "decoder.classifier.8.bias",
]


@pytest.mark.parametrize("backbone", ["resnet_mini", "resnet50", "resnest50"])
def test_logits_come_back_at_odd_input_sizes(backbone):
    torch.manual_seed(0)
    model = DeepLabv3Plus(backbone, pretrained="none").eval()
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 33, 47))
    assert logits.shape == (1, 21, 33, 47)
    assert torch.isfinite(logits).all()
    assert model.aspp.aspp1.atrous_conv.in_channels == model.stage_channels[-1]
    assert model.decoder.conv1.in_channels == model.stage_channels[1]


def test_aspp_branches_follow_the_published_dilations():
    model = DeepLabv3Plus("resnet_mini", pretrained="none")
    convs = [getattr(model.aspp, f"aspp{index}").atrous_conv for index in range(1, 5)]
    assert [conv.kernel_size for conv in convs] == [(1, 1), (3, 3), (3, 3), (3, 3)]
    assert [conv.dilation for conv in convs] == [(1, 1), (6, 6), (12, 12), (18, 18)]
    assert [conv.padding for conv in convs] == [(0, 0), (6, 6), (12, 12), (18, 18)]
    assert model.aspp.conv1.in_channels == 1280 and model.decoder.classifier[0].in_channels == 304
    assert model.decoder.classifier[8].out_channels == 21 and model.decoder.classifier[8].bias is not None
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.5, 0.5, 0.1]


def test_group_norm_switch_changes_only_the_head_norms():
    def module_types(use_gn):
        return {name: type(module) for name, module in
                DeepLabv3Plus("resnet_mini", mode="fix", use_gn=use_gn, pretrained="none").named_modules()}

    with_gn, without_gn = module_types(True), module_types(False)
    assert with_gn.keys() == without_gn.keys()
    changed = sorted(name for name in with_gn if with_gn[name] != without_gn[name])
    assert changed == ["aspp.aspp1.bn", "aspp.aspp2.bn", "aspp.aspp3.bn", "aspp.aspp4.bn", "aspp.bn1",
                       "aspp.global_avg_pool.2", "decoder.bn1", "decoder.classifier.1", "decoder.classifier.5"]
    assert all(with_gn[name] is nn.GroupNorm and without_gn[name] is FixedBatchNorm for name in changed)
    groups = DeepLabv3Plus("resnet_mini", use_gn=True, pretrained="none").aspp.bn1
    assert groups.num_groups == 4 and groups.num_channels == 256
    normal = DeepLabv3Plus("resnet_mini", mode="normal", use_gn=False, pretrained="none")
    assert type(normal.decoder.bn1) is nn.BatchNorm2d and type(normal.model.bn1) is nn.BatchNorm2d


def test_new_layers_are_initialised_as_published():
    torch.manual_seed(0)
    model = DeepLabv3Plus("resnet_mini", use_gn=False, pretrained="none")
    norm = model.decoder.classifier[1]
    assert torch.all(norm.weight == 1) and torch.all(norm.bias == 0)
    # Kaiming normal (fan_in, gain √2): std = √(2 / fan_in), fan_in = 304·3·3
    std = model.decoder.classifier[0].weight.std().item()
    assert std == pytest.approx((2 / (304 * 9)) ** 0.5, rel=0.05)


def test_state_dict_keys_follow_the_published_layout():
    model = DeepLabv3Plus("resnet_mini", pretrained="none")
    state = model.state_dict()
    assert [key for key in state if key.startswith(("aspp.", "decoder."))] == HEAD_KEYS
    assert torch.equal(state["model.conv1.weight"], state["stage1.0.weight"])
    assert torch.equal(state["model.layer1.0.conv1.weight"], state["stage2.0.0.conv1.weight"])
    assert all(key.startswith(("model.", "stage", "aspp.", "decoder.")) for key in state)


def test_parameter_groups_put_the_head_in_the_new_groups():
    model = DeepLabv3Plus("resnet_mini", pretrained="none")
    groups = parameter_groups(model)
    names = {id(parameter): name for name, parameter in model.named_parameters()}
    assert {names[id(p)] for p in groups[2]} == {key for key in HEAD_KEYS if key.endswith("weight")}
    assert {names[id(p)] for p in groups[3]} == {key for key in HEAD_KEYS if key.endswith("bias")}
    assert all(names[id(p)].startswith("model.") for p in groups[0] + groups[1])


def test_checkpoint_round_trip_gives_identical_predictions(tmp_path):
    torch.manual_seed(0)
    model = DeepLabv3Plus("resnet_mini", pretrained="none").eval()
    save_checkpoint(model.state_dict(), tmp_path / "seg.pth")
    torch.manual_seed(1)
    other = DeepLabv3Plus("resnet_mini", pretrained="none").eval()
    images = torch.randn(2, 3, 40, 36)
    with torch.no_grad():
        assert not torch.equal(other(images), model(images))
        load_weights(other, tmp_path / "seg.pth")
        assert torch.equal(other(images), model(images))
    with pytest.raises(StageError, match="missing 27 keys"):  # GroupNorm checkpoint, batch-norm model: 9 norms × 3 buffers
        load_weights(DeepLabv3Plus("resnet_mini", use_gn=False, pretrained="none"), tmp_path / "seg.pth")


def test_registry_refuses_unknown_architectures():
    assert isinstance(build_segmentation_model("DeepLabv3+", "resnet_mini", pretrained="none"), DeepLabv3Plus)
    with pytest.raises(ValueError, match=r"unknown segmentation architecture 'Seg_Model'; choose from \['DeepLabv3\+'\]"):
        build_segmentation_model("Seg_Model", "resnet_mini", pretrained="none")
