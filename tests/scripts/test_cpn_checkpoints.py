"""CPN checkpoints interchange with the published network class (ResNet-38 `Net`, CPN's layers
beside the trunk's, no prefix) at the script level: its state dict runs in infer_cam.py, and the
state dict this project's trainer writes loads into it."""
import numpy as np
import torch
from torch import nn

import infer_cam
from wsss.data.voc import VOCData, read_image_ids
from wsss.methods.cpn import cpn_image_cams
from wsss.models.cpn import cpn_resnet38d
from wsss.models.resnet38d import ResNet38d
from wsss.utils.files import load_maps, save_checkpoint


class PublishedNet(ResNet38d):
    def __init__(self):
        super().__init__()
        self.fc8 = nn.Conv2d(4096, 21, 1, bias=False)
        self.f8_3 = nn.Conv2d(512, 64, 1, bias=False)
        self.f8_4 = nn.Conv2d(1024, 128, 1, bias=False)
        self.f9 = nn.Conv2d(195, 192, 1, bias=False)
        self.f10 = nn.Conv2d(195, 192, 1, bias=False)


def test_published_state_dicts_run_in_infer_cam_and_ours_load_into_the_published_class(toy_voc, tmp_path,
                                                                                       monkeypatch, one_thread):
    torch.manual_seed(0)
    published = PublishedNet()
    torch.save(published.state_dict(), tmp_path / "CPN.pth")  # as the published train_cpn.py saves it
    image_id = read_image_ids("train", toy_voc)[0]
    (tmp_path / "one.txt").write_text(f"/JPEGImages/{image_id}.jpg /SegmentationClassAug/{image_id}.png\n")
    monkeypatch.chdir(tmp_path)
    argv = ["--network", "network.resnet38_CPN", "--weights", "CPN.pth", "--infer_list", "one.txt",
            "--voc12_root", str(toy_voc), "--out_cam", "out", "--scales", "1.0", "--num_workers", "0"]
    infer_cam.main(infer_cam.build_parser().parse_args(argv))
    written = load_maps(tmp_path / "out" / f"{image_id}.npz")

    ours = cpn_resnet38d()
    ours.load_state_dict(published.state_dict(), strict=True)
    data = VOCData(toy_voc)
    keys, cam, hr_cam = cpn_image_cams(ours.eval(), data.image(image_id), data.label(image_id), (1.0,),
                                       torch.device("cpu"))
    assert written["keys"].tolist() == keys.tolist() and len(keys) > 1
    assert np.array_equal(written["hr_cam"], hr_cam) and np.array_equal(written["cam"], cam)

    with torch.no_grad():  # our weights move away from the published network's, then travel back
        ours.fc8.weight.add_(1.0)
        ours.backbone.b4_3.conv_branch2a.weight.mul_(-1.0)
    save_checkpoint(ours.state_dict(), tmp_path / "ours.pth")  # as this project's trainer saves it
    published.load_state_dict(torch.load(tmp_path / "ours.pth", weights_only=True), strict=True)
    assert torch.equal(published.fc8.weight, ours.fc8.weight)
    assert torch.equal(published.b4_3.conv_branch2a.weight, ours.backbone.b4_3.conv_branch2a.weight)
    assert torch.equal(published.bn7.running_var, ours.backbone.bn7.running_var)
