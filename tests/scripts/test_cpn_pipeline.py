"""run_pipeline.py --method cpn: the plan of CPN's chain (scripts, flags, the halved affinity
thresholds, the trunk step) for both presets, and its table."""
import pytest

import run_pipeline
from wsss.utils.errors import StageError


def plan_of(*argv):
    args = run_pipeline.apply_preset(run_pipeline.build_parser().parse_args(["--method", "cpn", *argv]))
    return args, run_pipeline.cpn_chain(args)


def stage_flags(stage):
    return dict(zip(stage.flags[::2], stage.flags[1::2]))


def test_toy_plan_trains_cpn_from_scratch_and_starts_the_later_networks_from_its_trunk():
    args, plan = plan_of()
    names = [stage.name for stage in plan.stages]
    assert names[:4] == ["classifier Toy@CPN", "CAMs Toy@CPN",
                         "trunk of Toy@CPN for AffinityNet and DeepLabv3+ (experiments/models/Toy@CPN.trunk.pth)",
                         "affinity labels"]
    assert [stage.script for stage in plan.stages if not callable(stage.script)] == [
        "train_cpn.py", "infer_cam.py", "make_affinity_labels.py", "train_affinitynet.py", "inference_rw.py",
        "make_pseudo_labels.py", "train_segmentation.py", "inference_segmentation.py", "inference_segmentation.py"]
    training = stage_flags(plan.stages[0])
    assert (training["--network"], training["--weights"], training["--mode"], training["--session_name"]) == (
        "resnet_mini", "none", "normal", "Toy@CPN")
    assert training["--max_epoch"] == 8 and training["--image_size"] == 128
    cams = stage_flags(plan.stages[1])
    assert cams["--infer_list"] == "train_aug" and cams["--scales"] == "1.0,2.0"
    assert str(cams["--out_cam"]).endswith("experiments/predictions/Toy@CPN@train@scale=1.0,2.0")
    affinity = stage_flags(plan.stages[3])
    assert (affinity["--fg_threshold"], affinity["--bg_threshold"]) == ("0.20", "0.05")
    for stage in plan.stages[4], plan.stages[7]:  # AffinityNet and DeepLabv3+
        assert stage_flags(stage)["--pretrained"].endswith("experiments/models/Toy@CPN.trunk.pth")
    assert stage_flags(plan.stages[4])["--tag"] == "AffinityNet@Toy@CPN"
    assert plan.evaluations["CAM"] == ("Toy@CPN@train@scale=1.0,2.0", run_pipeline.CPN_SWEEP, "train")
    assert plan.result_tag == "Toy@CPN" and stage_flags(run_pipeline.Stage("", "", plan.report, None, None))[
        "--cam_dir"] == "Toy@CPN@train@scale=1.0,2.0"


def test_voc_plan_trains_the_published_network_with_its_defaults():
    _, plan = plan_of("--preset", "voc", "--data_dir", "VOC")
    training = stage_flags(plan.stages[0])
    assert (training["--network"], training["--weights"]) == ("resnet38d", "imagenet")
    assert "--mode" not in training and "--batch_size" not in training and "--max_epoch" not in training
    assert not any(callable(stage.script) for stage in plan.stages)
    assert stage_flags(plan.stages[1])["--network"] == "resnet38d"
    assert stage_flags(plan.stages[3])["--pretrained"] == "imagenet"  # AffinityNet: its own ImageNet weights


def test_cpn_runs_with_table_2_only():
    args = run_pipeline.build_parser().parse_args(["--method", "cpn", "--table", "1"])
    with pytest.raises(StageError, match="--method cpn runs CPN's own chain"):
        run_pipeline.run(args)


def test_table_puts_cpn_next_to_the_puzzle_run_and_the_paper(capsys):
    results = {row: {"mIoU": value} for row, value in zip(run_pipeline.TABLE2_ROWS, (30.5, 40.25, 45.0, 5.0))}
    run_pipeline.print_cpn_table(results, {"preset": "toy", "CAM": 60.77, "CAM+RW": 62.76, "CAM+RW+dCRF": 65.85,
                                           "DeepLabv3+ val": 3.56})
    lines = capsys.readouterr().out.splitlines()
    assert lines[3].split() == ["CAM", "30.50", "60.77", "57.41"]
    assert lines[4].split() == ["CAM+RW", "40.25", "62.76", "—"]
    assert lines[6].split() == ["DeepLabv3+", "val", "5.00", "3.56", "67.80"]
    run_pipeline.print_cpn_table(results, None)
    lines = capsys.readouterr().out.splitlines()
    assert lines[3].split() == ["CAM", "30.50", "—", "57.41"] and "Puzzle-CAM column" in lines[-1]
