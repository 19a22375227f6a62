"""SILOP's four scripts as command lines on the toy dataset: the chain with folder flags into
make_affinity_labels.py, the published folder defaults from a `Dataset/VOC2012/` layout, and bad
input (missing USS, perimeter, CAM or mask file, size mismatch, corrupt JPEG, pickled CAMs), which
must end with exit status 2, one error line, and no file written."""
import pathlib
import shutil
import types

import numpy as np
import pytest
import torch
import workspace
from PIL import Image
from workspace import CAMS, files_under, run_in_process

import run_pipeline
from wsss.data.voc import load_mask, read_image_ids
from wsss.utils.cli import run_script
from wsss.utils.files import load_maps, save_cams

FAST = ["--max_iterations", "2", "--num_workers", "0"]  # USS: two training steps, inline
INLINE = ["--num_workers", "0"]
PUBLISHED_CAMS = "experiments/predictions/ResNeSt101@Puzzle@optimal@train@scale=0.5,1.0,1.5,2.0"


def chain_commands(data, root):
    """The four scripts with folder flags (outputs under root/silop), then the affinity labels."""
    silop, cams = root / "silop", root / "experiments" / "predictions" / CAMS
    lines = []
    for segment in ("slic", "quick"):
        uss, pm, fit = (silop / f"{kind}_{segment}" for kind in ("USS", "PM", "PerimeterFit"))
        lines += [("USS.py", ["--segment", segment, "--data_dir", data, "--domain", "train_aug", "--uss_dir", uss,
                              *FAST]),
                  ("Edge_detection.py", ["--segment", segment, "--uss_dir", uss, "--pm_dir", pm, *INLINE]),
                  ("PerimeterFit.py", ["--segment", segment, "--cam_path", cams, "--uss_dir", uss, "--pm_dir", pm,
                                       "--perimeterfit_dir", fit, *INLINE])]
    lines += [("Combine_PerimeterFit.py", ["--cam_dir", cams, "--slic_dir", silop / "PerimeterFit_slic", "--quick_dir",
                                           silop / "PerimeterFit_quick", "--data_dir", data, "--domain", "train_aug",
                                           "--output_dir", root / "experiments" / "predictions" / "Combined_CAM",
                                           *INLINE]),
              ("make_affinity_labels.py", ["--experiment_name", "Combined_CAM", "--domain", "train_aug",
                                           "--fg_threshold", "0.60", "--bg_threshold", "0.40", "--data_dir", data,
                                           *INLINE])]
    return [(script, [str(argument) for argument in argv]) for script, argv in lines]


def run_all(commands, cwd, monkeypatch):
    for script, argv in commands:
        assert run_in_process(script, argv, cwd, monkeypatch) == 0, (script, argv)


@pytest.fixture(scope="module")
def template(toy_voc, tmp_path_factory):
    """The toy dataset, fabricated CAMs, and the whole chain run once with folder flags."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("silop_scripts")
    data = pathlib.Path(shutil.copytree(toy_voc, base / "voc"))
    workspace.build(data, base / "root")
    with pytest.MonkeyPatch.context() as monkeypatch:
        run_all(chain_commands(data, base / "root"), base / "root", monkeypatch)
    yield base
    torch.set_num_threads(threads)


@pytest.fixture
def ws(template, tmp_path):
    data = pathlib.Path(shutil.copytree(template / "voc", tmp_path / "voc"))
    root = pathlib.Path(shutil.copytree(template / "root", tmp_path / "root"))
    return types.SimpleNamespace(data=data, root=root, silop=root / "silop", first=read_image_ids("train_aug", data)[0],
                                 cams=root / "experiments" / "predictions" / CAMS)


def test_chain_runs_into_affinity_labels(template):
    root, ids = template / "root", read_image_ids("train_aug", template / "voc")
    for kind, suffix in (("USS", ".jpg"), ("PM", ".jpg"), ("PerimeterFit", ".npy")):
        for segment in ("slic", "quick"):
            assert sorted(files_under(root / "silop" / f"{kind}_{segment}")) == [f"{i}{suffix}" for i in ids]
    predictions = root / "experiments" / "predictions"
    for image_id in ids:
        combined, original = (load_maps(folder / f"{image_id}.npz") for folder in (predictions / "Combined_CAM",
                                                                                   predictions / CAMS))
        np.testing.assert_array_equal(combined["keys"], original["keys"])
        assert np.all(combined["hr_cam"] >= original["hr_cam"]) and np.all(combined["hr_cam"] <= 2 * original["hr_cam"])
        label = load_mask(predictions / "Combined_CAM@aff_fg=0.60_bg=0.40" / f"{image_id}.png")
        assert set(np.unique(label)) <= set(original["keys"].tolist()) | {255}


def test_published_folder_defaults(template, tmp_path, monkeypatch):
    """From a folder laid out as SILOP's README asks (Dataset/VOC2012/, the Puzzle-CAM CAMs under
    experiments/predictions/), the published command lines need no folder flag."""
    shutil.copytree(template / "voc", tmp_path / "Dataset" / "VOC2012")
    shutil.copytree(template / "root" / "experiments" / "predictions" / CAMS, tmp_path / PUBLISHED_CAMS)
    commands = [(script, extra + ([] if segment == "slic" else ["--segment", "quick"]))
                for script, extra in (("USS.py", FAST), ("Edge_detection.py", INLINE), ("PerimeterFit.py", INLINE))
                for segment in ("slic", "quick")]
    commands += [("Combine_PerimeterFit.py", INLINE),
                 ("make_affinity_labels.py", ["--experiment_name", "Combined_CAM", "--domain", "train_aug",
                                              "--fg_threshold", "0.60", "--bg_threshold", "0.40", "--data_dir",
                                              "Dataset/VOC2012", *INLINE])]
    run_all(sorted(commands, key=lambda command: ["USS.py", "Edge_detection.py", "PerimeterFit.py",
                                                   "Combine_PerimeterFit.py", "make_affinity_labels.py"]
                   .index(command[0])), tmp_path, monkeypatch)
    every_image = sorted(path.name for path in (template / "voc" / "JPEGImages").iterdir())
    chained = template / "root"
    for segment in ("slic", "quick"):
        # without --domain: every image of JPEGImages/ (as published), the same maps as the listed run
        assert sorted(files_under(tmp_path / "Dataset" / f"USS_{segment}")) == every_image
        assert sorted(files_under(tmp_path / "Dataset" / f"PM_{segment}")) == every_image
        for name in files_under(chained / "silop" / f"PerimeterFit_{segment}"):
            assert (tmp_path / "Dataset" / f"PerimeterFit_{segment}" / name).read_bytes() == \
                (chained / "silop" / f"PerimeterFit_{segment}" / name).read_bytes()
    for name in ("Combined_CAM", "Combined_CAM@aff_fg=0.60_bg=0.40"):
        assert files_under(tmp_path / "experiments" / "predictions" / name) == \
            files_under(chained / "experiments" / "predictions" / name)


def truncate(path):
    path.write_bytes(path.read_bytes()[:300])


def shrink_cam(ws):
    """The first image's CAM file, one column too narrow."""
    path = ws.cams / f"{ws.first}.npz"
    maps = load_maps(path)
    save_cams(path, maps["keys"], maps["cam"], maps["hr_cam"][:, :, :-1])


def pickle_cam(ws):
    path = ws.cams / f"{ws.first}.npz"
    maps = load_maps(path)
    np.save(path.with_suffix(".npy"), {"keys": maps["keys"], "cam": torch.from_numpy(maps["cam"]),
                                       "hr_cam": maps["hr_cam"]}, allow_pickle=True)
    path.unlink()


def fit_line(ws, segment="slic", *extra):
    return ["--segment", segment, "--cam_path", ws.cams, "--uss_dir", ws.silop / f"USS_{segment}",
            "--pm_dir", ws.silop / f"PM_{segment}", "--perimeterfit_dir", ws.silop / "new", *INLINE, *extra]


def combine_line(ws):
    return ["--cam_dir", ws.cams, "--slic_dir", ws.silop / "PerimeterFit_slic", "--quick_dir",
            ws.silop / "PerimeterFit_quick", "--data_dir", ws.data, "--output_dir", ws.silop / "new", *INLINE]


# (script, command line, damage done first, fragments of the error line)
BAD_INPUT = {
    "missing USS map": ("PerimeterFit.py", fit_line, lambda ws: (ws.silop / "USS_slic" / f"{ws.first}.jpg").unlink(),
                        ["USS_slic", "segmentation map not found", "run USS.py"]),
    "missing perimeter map": ("PerimeterFit.py", fit_line,
                              lambda ws: (ws.silop / "PM_slic" / f"{ws.first}.jpg").unlink(),
                              ["PM_slic", "perimeter map not found", "run Edge_detection.py"]),
    "missing USS map for the edges": (
        "Edge_detection.py",
        lambda ws: ["--uss_dir", ws.silop / "USS_quick", "--pm_dir", ws.silop / "new", "--domain", "train_aug",
                    "--data_dir", ws.data, *INLINE],
        lambda ws: (ws.silop / "USS_quick" / f"{ws.first}.jpg").unlink(), ["segmentation map not found"]),
    "missing CAM file": ("PerimeterFit.py", lambda ws: fit_line(ws, "slic", "--domain", "train_aug", "--data_dir",
                                                                ws.data),
                         lambda ws: (ws.cams / f"{ws.first}.npz").unlink(), ["CAM file missing", "1 of 8"]),
    "missing CAM file to combine": ("Combine_PerimeterFit.py", combine_line,
                                    lambda ws: (ws.cams / f"{ws.first}.npz").unlink(), ["CAM file missing"]),
    "missing PerimeterFit masks": ("Combine_PerimeterFit.py", combine_line,
                                   lambda ws: (ws.silop / "PerimeterFit_quick" / f"{ws.first}.npy").unlink(),
                                   ["PerimeterFit masks not found", "PerimeterFit.py --segment quick"]),
    "CAM and segmentation map sizes differ": ("PerimeterFit.py", fit_line, shrink_cam,
                                              ["CAMs of", "the segmentation map", "same image"]),
    "CAM and image sizes differ": ("Combine_PerimeterFit.py", combine_line, shrink_cam,
                                   ["CAMs of", "but the image", "same image"]),
    "corrupt image": ("USS.py", lambda ws: ["--data_dir", ws.data, "--domain", "train_aug", "--uss_dir",
                                            ws.silop / "new", *FAST],
                      lambda ws: truncate(ws.data / "JPEGImages" / f"{ws.first}.jpg"), ["unreadable image"]),
    "corrupt USS map": ("Edge_detection.py", lambda ws: ["--uss_dir", ws.silop / "USS_slic", "--pm_dir",
                                                         ws.silop / "new", *INLINE],
                        lambda ws: truncate(ws.silop / "USS_slic" / f"{ws.first}.jpg"), ["unreadable picture"]),
    "corrupt perimeter map": ("PerimeterFit.py", fit_line,
                              lambda ws: truncate(ws.silop / "PM_slic" / f"{ws.first}.jpg"), ["unreadable picture"]),
    "pickled CAM file": ("Combine_PerimeterFit.py", combine_line, pickle_cam, ["--allow_pickle True"]),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_one_line_exit_2_nothing_written(ws, monkeypatch, capsys, case):
    script, line, damage, fragments = BAD_INPUT[case]
    damage(ws)
    before = files_under(ws.root)
    status = run_in_process(script, [str(argument) for argument in line(ws)], ws.root, monkeypatch)
    stderr = capsys.readouterr().err
    errors = [text for text in stderr.splitlines() if text.startswith("error:")]
    assert status == 2 and len(errors) == 1, stderr[-2000:]
    assert ws.first in errors[0] or "CAM file missing" in errors[0], errors[0]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    assert files_under(ws.root) == before


def stage_flags(stage):
    return dict(zip(stage.flags[::2], stage.flags[1::2]))


def test_runner_plans_silop_after_the_plain_chain_and_reuses_its_cams():
    args = run_pipeline.apply_preset(run_pipeline.build_parser().parse_args(["--refine", "perimeterfit"]))
    plan = run_pipeline.table2(args)
    plain = run_pipeline.table2(run_pipeline.apply_preset(run_pipeline.build_parser().parse_args([])))
    same = [(stage.name, stage.script, stage.flags) for stage in plan.stages[:len(plain.stages)]]
    assert same == [(stage.name, stage.script, stage.flags) for stage in plain.stages]  # same tags: reused
    silop = {stage.name: stage for stage in plan.stages[len(plain.stages):]}
    assert [stage.script for stage in silop.values()] == [
        "USS.py", "Edge_detection.py", "PerimeterFit.py", "USS.py", "Edge_detection.py", "PerimeterFit.py",
        "Combine_PerimeterFit.py", "make_affinity_labels.py", "train_affinitynet.py", "inference_rw.py",
        "make_pseudo_labels.py", "train_segmentation.py", "inference_segmentation.py", "inference_segmentation.py"]
    cams = "Toy@Puzzle@train@scale=1.0,2.0"
    labels = stage_flags(silop["affinity labels + PerimeterFit"])
    assert (labels["--experiment_name"], labels["--fg_threshold"], labels["--bg_threshold"]) == \
        (f"{cams}@PerimeterFit", "0.60", "0.40")
    walk = stage_flags(silop["random walk + PerimeterFit"])
    assert walk["--cam_dir"] == cams and walk["--model_name"] == "AffinityNet@Toy@PerimeterFit"  # original CAMs
    pseudo = stage_flags(silop["pseudo labels + PerimeterFit"])
    assert (pseudo["--threshold"], pseudo["--crf_iteration"]) == ("0.35", 1)
    assert "--max_iterations" not in silop["USS slic"].flags  # USS's published 64 steps
    assert list(plan.evaluations)[4:] == [f"{row} + PerimeterFit" for row in run_pipeline.TABLE2_ROWS]
    assert plan.evaluations["CAM + PerimeterFit"] == (f"{cams}@PerimeterFit", "npy", "train")
    assert plan.result_tag == "Toy@PerimeterFit" and "--combined_cam_dir" in plan.report


def test_runner_voc_preset_takes_silop_training_defaults():
    args = run_pipeline.apply_preset(run_pipeline.build_parser().parse_args(
        ["--preset", "voc", "--tag", "R", "--refine", "perimeterfit"]))
    stages = {stage.name: stage_flags(stage) for stage in run_pipeline.table2(args).stages}
    assert (stages["AffinityNet + PerimeterFit"]["--batch_size"], stages["AffinityNet + PerimeterFit"]["--max_epoch"]) \
        == (8, 15)
    assert (stages["DeepLabv3+ + PerimeterFit"]["--batch_size"], stages["DeepLabv3+ + PerimeterFit"]["--max_epoch"]) \
        == (8, 200)
    assert "--batch_size" not in stages["AffinityNet"]  # the plain chain keeps Puzzle-CAM's defaults


def test_runner_toy_preset_trains_both_deeplabs_alike():
    """SILOP's DeepLabv3+ takes the preset's DeepLabv3+ settings, as the Puzzle-CAM chain's does."""
    args = run_pipeline.apply_preset(run_pipeline.build_parser().parse_args(["--refine", "perimeterfit"]))
    stages = {stage.name: stage_flags(stage) for stage in run_pipeline.table2(args).stages}
    plain, silop = stages["DeepLabv3+"], stages["DeepLabv3+ + PerimeterFit"]
    assert (silop["--batch_size"], silop["--lr"], silop["--max_epoch"]) == (args.seg_batch_size, args.seg_lr,
                                                                          args.seg_epochs) == (8, 0.001, 4)
    assert {flag: value for flag, value in plain.items() if flag not in ("--tag", "--label_name")} \
        == {flag: value for flag, value in silop.items() if flag not in ("--tag", "--label_name")}


def test_runner_refuses_refine_with_table_1(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        run_script(run_pipeline.main, run_pipeline.build_parser(), ["--table", "1", "--refine", "perimeterfit"])
    assert stop.value.code == 2 and "Table 2 only" in capsys.readouterr().err
    assert not (tmp_path / "toy_voc").exists()


def test_report_gets_the_three_silop_columns(ws, monkeypatch, capsys):
    line = ["--tag", "silop", "--data_dir", ws.data, "--domain", "train", "--cam_dir", CAMS, "--rw_dir", workspace.RW,
            "--pseudo_dir", workspace.PSEUDO_LABELS, "--prediction_dir", workspace.PSEUDO_LABELS, "--samples", "2"]
    silop = ["--uss_dir", ws.silop / "USS_slic", "--perimeterfit_slic_dir", ws.silop / "PerimeterFit_slic",
             "--perimeterfit_quick_dir", ws.silop / "PerimeterFit_quick", "--combined_cam_dir", "Combined_CAM"]
    assert run_in_process("make_report.py", [str(argument) for argument in line + silop[:2]], ws.root,
                          monkeypatch) == 2
    assert "go together" in capsys.readouterr().err
    assert run_in_process("make_report.py", [str(argument) for argument in line + silop], ws.root, monkeypatch) == 0
    plain = run_in_process("make_report.py", [str(argument) for argument in line[:1] + ["plain"] + line[2:]],
                           ws.root, monkeypatch)
    assert plain == 0
    reports = ws.root / "experiments" / "reports"
    with_silop, without = (np.asarray(Image.open(reports / tag / "samples.png")) for tag in ("silop", "plain"))
    cell_and_gap = 164  # make_report's sheet: 160-pixel cells, 4-pixel gaps
    assert with_silop.shape[1] - without.shape[1] == 3 * cell_and_gap
