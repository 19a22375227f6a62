import pytest
import torch

from wsss.models.backbones import Backbone, default_weights_dir
from wsss.models.classifier import Classifier
from wsss.models.resnet import ResNet
from wsss.utils.errors import StageError
from wsss.utils.files import load_weights, save_checkpoint


def test_state_dict_holds_backbone_under_model_and_stage_names():
    model = Classifier("resnet_mini", mode="fix", pretrained="none")
    state = model.state_dict()
    pairs = {"model.conv1.weight": "stage1.0.weight", "model.bn1.running_var": "stage1.1.running_var",
             "model.layer1.0.conv2.weight": "stage2.0.0.conv2.weight",
             "model.layer4.0.downsample.0.weight": "stage5.0.0.downsample.0.weight"}
    for ours, alias in pairs.items():
        assert torch.equal(state[ours], state[alias])
    assert "classifier.weight" in state and "classifier.bias" not in state
    names = [name for name, _ in model.named_parameters()]
    assert not any(name.startswith("stage") for name in names)  # each parameter once, under model.


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    model = Classifier("resnet_mini", mode="normal", pretrained="none").eval()
    save_checkpoint(model.state_dict(), tmp_path / "a.pth")
    # DataParallel-saved keys ("module.") load too
    save_checkpoint({f"module.{k}": v for k, v in model.state_dict().items()}, tmp_path / "b.pth")
    images = torch.randn(2, 3, 48, 40)
    for name in ("a.pth", "b.pth"):
        other = Classifier("resnet_mini", mode="normal", pretrained="none").eval()
        load_weights(other, tmp_path / name)
        assert torch.equal(other(images, with_cam=True)[1], model(images, with_cam=True)[1])


def test_checkpoint_of_another_architecture_names_the_keys(tmp_path):
    save_checkpoint(Classifier("resnet_mini", pretrained="none").state_dict(), tmp_path / "m.pth")
    with pytest.raises(StageError, match="tensor shapes differ|missing"):
        load_weights(Classifier("resnet50", pretrained="none"), tmp_path / "m.pth")
    state = Classifier("resnet_mini", pretrained="none").state_dict()
    del state["stage1.0.weight"]
    save_checkpoint(state, tmp_path / "n.pth")
    with pytest.raises(StageError, match=r"missing 1 keys, e.g. \['stage1.0.weight'\]"):
        load_weights(Classifier("resnet_mini", pretrained="none"), tmp_path / "n.pth")
    with pytest.raises(StageError, match="checkpoint not found"):
        load_weights(Classifier("resnet_mini", pretrained="none"), tmp_path / "none.pth")


def test_imagenet_weights_load_from_a_torchvision_layout_file(tmp_path):
    torch.manual_seed(1)
    source = ResNet([3, 4, 6, 3])
    state = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    state["fc.weight"] = torch.zeros(1000, 2048)
    state["fc.bias"] = torch.zeros(1000)
    torch.save(state, tmp_path / "resnet50-19c8e357.pth")
    backbone = Backbone("resnet50", mode="fix", pretrained=str(tmp_path))  # a folder holding the file
    assert torch.equal(backbone.model.layer3[2].conv2.weight, source.layer3[2].conv2.weight)
    assert torch.equal(backbone.stage1[1].running_mean, source.bn1.running_mean)


def test_resnest_weights_load_and_missing_weights_are_explained(tmp_path, monkeypatch):
    from resnest.torch import resnest50

    source = resnest50(pretrained=False, dilated=False, dilation=2)
    torch.save(source.state_dict(), tmp_path / "weights.pth")
    backbone = Backbone("resnest50", pretrained=str(tmp_path / "weights.pth"))
    assert torch.equal(backbone.model.layer4[0].conv2.conv.weight, source.layer4[0].conv2.conv.weight)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(FileNotFoundError, match="resnest50-528c19ca.pth.*--pretrained none"):
        Backbone("resnest50", pretrained="imagenet")
    assert default_weights_dir() == tmp_path / "hub" / "checkpoints"
    with pytest.raises(ValueError, match="resnet_mini has no ImageNet weights"):
        Backbone("resnet_mini", pretrained="imagenet")


def test_a_trained_classifier_checkpoint_initialises_later_backbones(tmp_path):
    """run_pipeline's toy preset starts AffinityNet and DeepLabv3+ from the classifier's backbone."""
    from wsss.models.affinitynet import AffinityNet
    from wsss.models.deeplab import DeepLabv3Plus

    torch.manual_seed(0)
    classifier = Classifier("resnet_mini", mode="normal", pretrained="none")
    with torch.no_grad():
        for parameter in classifier.parameters():
            parameter.add_(torch.randn_like(parameter))
    save_checkpoint(classifier.state_dict(), tmp_path / "cls.pth")
    expected = {f"model.{k}": v for k, v in classifier.model.state_dict().items()}
    for model in (AffinityNet("resnet_mini", pretrained=str(tmp_path / "cls.pth")),
                  DeepLabv3Plus("resnet_mini", pretrained=str(tmp_path / "cls.pth"))):
        state = model.state_dict()
        for key, value in expected.items():
            assert torch.equal(state[key], value), key
