"""Every stage script with `--dataset coco14`, once, on a toy dataset in MS COCO 2014 layout: five
scenes and one image without annotations in train2014 (six, so that every epoch's batches of two
hold them all) and three scenes in val2014. It runs the ground-truth masks, the Puzzle-CAM chain to
the report, CPN's three scripts and SILOP's four, each command line parsed and run as a user's would
be, in this process (one chain for the module, to stay quick). The values checked are COCO's: 80
classifier outputs, 81 segmentation classes, class ids beyond VOC's 20, the 81-class metric
recomputed from the files, and the image without annotations (label all zero, CAM keys [0] without
maps, every later label all background)."""
import json
import pathlib
import types

import numpy as np
import pytest
import torch
from PIL import Image
from workspace import files_under, run_in_process

from wsss.data import coco
from wsss.data.toy_coco import generate
from wsss.utils.files import load_label_png, load_maps, load_perimeter_fit_masks

EMPTY = coco.image_name("train2014", 100)  # the train image without annotations
EMPTY_SIZE = (70, 58)  # height, width
CAMS = "cls@train@scale=1.0"
AFFINITY_LABELS = f"{CAMS}@aff_fg=0.30_bg=0.05"
RW = "aff@train@beta=10@exp_times=3@rw"
PSEUDO_LABELS = f"{RW}@crf=1"
SEGMENTATION = {domain: f"seg@{domain}@scale=1.0@iteration=0" for domain in ("train", "val")}
CPN_CAMS = "cpn@train@scale=1.0"
SILOP_LIST = "silop.txt"  # SILOP runs on two images: a scene and the empty one
TINY = ["--pretrained", "none", "--batch_size", "2", "--max_epoch", "1", "--num_workers", "0"]
SIZES = ["--image_size", "64", "--min_image_size", "48", "--max_image_size", "80"]
INLINE = ["--num_workers", "0"]
COCO = ["--dataset", "coco14"]


def add_empty_image(root):
    """An image entry and its JPEG in train2014, with no annotation."""
    height, width = EMPTY_SIZE
    pixels = np.random.default_rng(7).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(root / "train2014" / f"{EMPTY}.jpg", quality=95)
    path = root / "annotations" / "instances_train2014.json"
    instances = json.loads(path.read_text())
    instances["images"].append(dict(id=coco.parse_image_name(EMPTY)[1], file_name=f"{EMPTY}.jpg", height=height,
                                    width=width))
    path.write_text(json.dumps(instances))


def chain_commands(data):
    """(script, argv) of every stage in order, outputs under the working directory."""
    predictions = pathlib.Path("experiments/predictions")
    silop = pathlib.Path("silop")
    lines = [
        ("make_coco_masks.py", ["--data_dir", data, *INLINE]),
        ("train_classification_with_puzzle.py", ["--architecture", "resnet_mini", "--tag", "cls", "--data_dir", data,
                                                 *TINY, *SIZES]),
        ("train_classification.py", ["--architecture", "resnet_mini", "--tag", "plain", "--data_dir", data, *TINY,
                                     *SIZES]),
        ("inference_classification.py", ["--architecture", "resnet_mini", "--tag", "cls", "--domain", "train",
                                         "--scales", "1.0", "--data_dir", data, *INLINE]),
        ("evaluate.py", ["--experiment_name", CAMS, "--domain", "train", "--data_dir", data, "--num_workers", "1"]),
        ("make_affinity_labels.py", ["--experiment_name", CAMS, "--domain", "train", "--fg_threshold", "0.30",
                                     "--bg_threshold", "0.05", "--data_dir", data, *INLINE]),
        ("train_affinitynet.py", ["--architecture", "resnet_mini", "--tag", "aff", "--label_name", AFFINITY_LABELS,
                                  "--data_dir", data, *TINY, "--image_size", "80", "--min_image_size", "64",
                                  "--max_image_size", "80"]),
        ("inference_rw.py", ["--architecture", "resnet_mini", "--model_name", "aff", "--cam_dir", CAMS, "--domain",
                             "train", "--exp_times", "3", "--data_dir", data, *INLINE]),
        ("evaluate.py", ["--experiment_name", RW, "--domain", "train", "--mode", "rw", "--data_dir", data,
                         "--num_workers", "1"]),
        ("make_pseudo_labels.py", ["--experiment_name", RW, "--domain", "train", "--crf_iteration", "1",
                                   "--data_dir", data, *INLINE]),
        ("train_segmentation.py", ["--backbone", "resnet_mini", "--tag", "seg", "--label_name", PSEUDO_LABELS,
                                   "--data_dir", data, *TINY, *SIZES]),
        *[("inference_segmentation.py", ["--backbone", "resnet_mini", "--tag", "seg", "--domain", domain, "--scales",
                                         "1.0", "--iteration", "0", "--data_dir", data, *INLINE])
          for domain in ("train", "val")],
        ("evaluate.py", ["--experiment_name", SEGMENTATION["val"], "--domain", "val", "--mode", "png", "--data_dir",
                         data, "--num_workers", "1"]),
        ("make_report.py", ["--tag", "report", "--data_dir", data, "--domain", "train", "--cam_dir", CAMS, "--rw_dir",
                            RW, "--pseudo_dir", PSEUDO_LABELS, "--prediction_dir", SEGMENTATION["train"],
                            "--samples", "6", "--evaluations", f"CAM={CAMS}@train",
                            f"DeepLabv3+={SEGMENTATION['val']}@val"]),
        ("train_cpn.py", ["--network", "resnet_mini", "--weights", "none", "--batch_size", "2", "--max_epoches", "1",
                          "--crop_size", "64", "--min_image_size", "48", "--max_image_size", "80", "--session_name",
                          "cpn", "--voc12_root", data, *INLINE]),
        ("infer_cam.py", ["--network", "resnet_mini", "--weights", "experiments/models/cpn.pth", "--infer_list",
                          "train", "--scales", "1.0", "--voc12_root", data, "--out_cam", predictions / CPN_CAMS,
                          *INLINE]),
        ("evaluation_cam.py", ["--list", "train", "--predict_dir", predictions / CPN_CAMS, "--gt_dir", data,
                               "--num_workers", "1"]),
    ]
    listed = ["--data_dir", data, "--domain", SILOP_LIST]
    for segment in ("slic", "quick"):
        uss, pm, fit = (silop / f"{kind}_{segment}" for kind in ("USS", "PM", "PerimeterFit"))
        lines += [("USS.py", ["--segment", segment, *listed, "--uss_dir", uss, "--max_iterations", "2", *INLINE]),
                  ("Edge_detection.py", ["--segment", segment, *listed, "--uss_dir", uss, "--pm_dir", pm, *INLINE]),
                  ("PerimeterFit.py", ["--segment", segment, *listed, "--cam_path", predictions / CAMS, "--uss_dir",
                                       uss, "--pm_dir", pm, "--perimeterfit_dir", fit, *INLINE])]
    lines.append(("Combine_PerimeterFit.py", [*listed, "--cam_dir", predictions / CAMS, "--slic_dir",
                                              silop / "PerimeterFit_slic", "--quick_dir", silop / "PerimeterFit_quick",
                                              "--output_dir", predictions / "Combined_CAM", *INLINE]))
    # make_coco_masks.py reads COCO only and has no --dataset
    return [(script, [str(argument) for argument in [*argv, *(COCO if script != "make_coco_masks.py" else [])]])
            for script, argv in lines]


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    base = tmp_path_factory.mktemp("coco_stages")
    data = generate(base / "coco", num_train=5, num_val=3, min_size=64, max_size=80, show_progress=False)
    add_empty_image(data)
    folder = coco.COCOData(data)
    train = folder.image_ids("train")
    (base / "work").mkdir()
    (base / "work" / SILOP_LIST).write_text(f"{train[0]}\n{EMPTY}\n")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("OMP_NUM_THREADS", "1")
            for script, argv in chain_commands(data):
                assert run_in_process(script, argv, base / "work", patch) == 0, (script, argv)
    finally:
        torch.set_num_threads(threads)
    return types.SimpleNamespace(data=data, folder=folder, work=base / "work", train=train,
                                 val=folder.image_ids("val"), predictions=base / "work" / "experiments" / "predictions",
                                 models=base / "work" / "experiments" / "models")


def image_shape(folder, image_id):
    return folder.record(image_id).height, folder.record(image_id).width


def class_keys(folder, image_id):
    return [0, *(np.flatnonzero(folder.label(image_id)) + 1).tolist()]


def brute_force_iou(predictions, truths):
    """Per-class IoU in % over the 81 classes, a class at a time: TP / (T + P − TP + 1e-10)."""
    iou = []
    for class_id in range(coco.NUM_CLASSES + 1):
        tp = sum(int(((p == class_id) & (t == class_id)).sum()) for p, t in zip(predictions, truths))
        total = sum(int((t == class_id).sum()) + int((p == class_id).sum()) for p, t in zip(predictions, truths))
        iou.append(100 * tp / (total - tp + 1e-10))
    return np.array(iou)


def map_prediction(maps, threshold, name="hr_cam"):
    """Each pixel's class: a present class whose map `name` beats every other and the background score."""
    scores = np.concatenate([np.full((1, *maps[name].shape[1:]), threshold), maps[name]])
    return maps["keys"][np.argmax(scores, axis=0)]


def check_labels(chain, name, allow_void):
    """One label PNG per train image, of its size, holding only its CAM keys (and 255 if allowed)."""
    folder = chain.predictions / name
    assert sorted(path.stem for path in folder.glob("*.png")) == chain.train
    void = {255} if allow_void else set()
    for image_id in chain.train:
        label = load_label_png(folder / f"{image_id}.png")
        assert label.shape == image_shape(chain.folder, image_id)
        assert set(np.unique(label).tolist()) <= set(class_keys(chain.folder, image_id)) | void
    np.testing.assert_array_equal(load_label_png(folder / f"{EMPTY}.png"), np.zeros(EMPTY_SIZE, dtype=np.uint8))


def test_ground_truth_masks_are_rendered_from_the_annotations(chain):
    for split, ids in (("train2014", chain.train), ("val2014", chain.val)):
        assert sorted(path.stem for path in (chain.data / "mask" / split).glob("*.png")) == ids
        for image_id in ids:
            np.testing.assert_array_equal(load_label_png(chain.folder.mask_path(image_id)),
                                          coco.render_mask(chain.folder.record(image_id)))
    assert EMPTY in chain.train and not chain.folder.label(EMPTY).any() and chain.folder.label(EMPTY).shape == (80,)
    np.testing.assert_array_equal(chain.folder.mask(EMPTY), np.zeros(EMPTY_SIZE, dtype=np.uint8))
    # the toy scenes reach class ids beyond VOC's 20 (bottle is COCO class 40, tv 62)
    assert max(max(class_keys(chain.folder, image_id)) for image_id in chain.train) > 20


def test_classifier_has_80_outputs_and_cams_follow_the_coco_labels(chain):
    for tag in ("cls", "plain"):
        assert torch.load(chain.models / f"{tag}.pth", weights_only=True)["classifier.weight"].shape[0] == 80
    folder = chain.predictions / CAMS
    assert sorted(path.stem for path in folder.glob("*.npz")) == chain.train
    for image_id in chain.train:
        maps = load_maps(folder / f"{image_id}.npz", coco.NUM_CLASSES)
        height, width = image_shape(chain.folder, image_id)
        assert maps["keys"].tolist() == class_keys(chain.folder, image_id)
        assert maps["hr_cam"].shape == (len(maps["keys"]) - 1, height, width)
        assert maps["cam"].shape == (len(maps["keys"]) - 1, (height - 1) // 4 + 1, (width - 1) // 4 + 1)
    empty = load_maps(folder / f"{EMPTY}.npz", coco.NUM_CLASSES)
    assert empty["keys"].tolist() == [0] and empty["hr_cam"].shape == (0, *EMPTY_SIZE) and empty["cam"].shape[0] == 0


def test_cam_evaluation_scores_81_classes_as_recomputed(chain):
    saved = json.loads((chain.work / "experiments" / "evaluations" / f"{CAMS}@train.json").read_text())
    assert saved["images"] == 6 and len(saved["IoU"]) == 81 and len(saved["sweep"]) == 15
    maps = [load_maps(chain.predictions / CAMS / f"{image_id}.npz") for image_id in chain.train]
    truths = [chain.folder.mask(image_id) for image_id in chain.train]
    iou = brute_force_iou([map_prediction(m, saved["threshold"]) for m in maps], truths)
    np.testing.assert_allclose(saved["IoU"], iou, atol=1e-6)
    assert saved["mIoU"] == pytest.approx(iou.mean()) and saved["mIoU"] == max(s["mIoU"] for s in saved["sweep"])


def test_affinity_and_pseudo_labels_hold_coco_class_ids(chain):
    check_labels(chain, AFFINITY_LABELS, allow_void=True)
    check_labels(chain, PSEUDO_LABELS, allow_void=False)
    history = json.loads((chain.work / "experiments" / "data" / "aff.json").read_text())
    assert history["finished"] and history["args"]["dataset"] == "coco14"


def test_random_walk_keeps_the_cam_keys(chain):
    for image_id in chain.train:
        maps = load_maps(chain.predictions / RW / f"{image_id}.npz", coco.NUM_CLASSES)
        assert maps["keys"].tolist() == class_keys(chain.folder, image_id)
        assert maps["rw"].shape == (len(maps["keys"]) - 1, *image_shape(chain.folder, image_id))
    assert load_maps(chain.predictions / RW / f"{EMPTY}.npz")["rw"].shape == (0, *EMPTY_SIZE)
    saved = json.loads((chain.work / "experiments" / "evaluations" / f"{RW}@train.json").read_text())
    assert saved["images"] == 6 and len(saved["IoU"]) == 81
    maps = [load_maps(chain.predictions / RW / f"{image_id}.npz") for image_id in chain.train]
    truths = [chain.folder.mask(image_id) for image_id in chain.train]
    iou = brute_force_iou([map_prediction(m, saved["threshold"], "rw") for m in maps], truths)
    np.testing.assert_allclose(saved["IoU"], iou, atol=1e-6)


def test_segmentation_has_81_classes_and_its_evaluation_is_recomputed(chain):
    state = torch.load(chain.models / "seg.pth", weights_only=True)
    assert state["decoder.classifier.8.weight"].shape[0] == 81
    for domain, ids in (("train", chain.train), ("val", chain.val)):
        folder = chain.predictions / SEGMENTATION[domain]
        assert sorted(path.stem for path in folder.glob("*.png")) == ids
        for image_id in ids:
            label = load_label_png(folder / f"{image_id}.png")
            assert label.shape == image_shape(chain.folder, image_id) and label.max() <= 80
    saved = json.loads((chain.work / "experiments" / "evaluations" / f"{SEGMENTATION['val']}@val.json").read_text())
    assert saved["images"] == 3 and len(saved["IoU"]) == 81
    predictions = [load_label_png(chain.predictions / SEGMENTATION["val"] / f"{i}.png") for i in chain.val]
    iou = brute_force_iou(predictions, [chain.folder.mask(image_id) for image_id in chain.val])
    np.testing.assert_allclose(saved["IoU"], iou, atol=1e-6)
    assert saved["mIoU"] == pytest.approx(iou.mean())


def test_report_shows_every_train_image_and_the_coco_class_names(chain):
    report = chain.work / "experiments" / "reports" / "report"
    with Image.open(report / "samples.png") as samples, Image.open(report / "class_iou.png") as bars:
        assert samples.height > 6 * 160 and bars.width > 0
    assert sorted(files_under(report)) == ["class_iou.png", "samples.png"]


def test_cpn_has_81_classes_and_its_sweep_scores_81(chain):
    state = torch.load(chain.models / "cpn.pth", weights_only=True)
    assert state["fc8.weight"].shape[0] == 81
    # the published list defaults, voc12/train_aug.txt and voc12/val.txt, name COCO's train and val lists
    history = json.loads((chain.work / "experiments" / "data" / "cpn.json").read_text())
    assert (history["args"]["train_list"], history["args"]["val_list"]) == ("voc12/train_aug.txt", "voc12/val.txt")
    assert chain.folder.image_ids("voc12/train_aug.txt") == chain.train
    assert chain.folder.image_ids("voc12/val.txt") == chain.val
    for image_id in chain.train:
        maps = load_maps(chain.predictions / CPN_CAMS / f"{image_id}.npz", coco.NUM_CLASSES)
        assert maps["keys"].tolist() == class_keys(chain.folder, image_id)
        assert maps["hr_cam"].shape == (len(maps["keys"]) - 1, *image_shape(chain.folder, image_id))
    assert load_maps(chain.predictions / CPN_CAMS / f"{EMPTY}.npz")["hr_cam"].shape == (0, *EMPTY_SIZE)
    saved = json.loads((chain.work / "experiments" / "evaluations" / f"{CPN_CAMS}@train.json").read_text())
    assert saved["images"] == 6 and len(saved["IoU"]) == 81 and len(saved["sweep"]) == 40
    maps = [load_maps(chain.predictions / CPN_CAMS / f"{image_id}.npz") for image_id in chain.train]
    iou = brute_force_iou([map_prediction(m, saved["threshold"]) for m in maps],
                          [chain.folder.mask(image_id) for image_id in chain.train])
    assert saved["mIoU"] == pytest.approx(iou.mean())


def test_silop_chain_runs_on_the_listed_coco_images(chain):
    silop, listed = chain.work / "silop", [chain.train[0], EMPTY]
    for segment in ("slic", "quick"):
        assert sorted(files_under(silop / f"USS_{segment}")) == sorted(f"{i}.jpg" for i in listed)
        assert sorted(files_under(silop / f"PM_{segment}")) == sorted(f"{i}.jpg" for i in listed)
        for image_id in listed:
            masks = load_perimeter_fit_masks(silop / f"PerimeterFit_{segment}" / f"{image_id}.npy")
            assert masks.shape == (len(class_keys(chain.folder, image_id)), *image_shape(chain.folder, image_id))
    assert sorted(files_under(chain.predictions / "Combined_CAM")) == sorted(f"{i}.npz" for i in listed)
    for image_id in listed:
        combined, original = (load_maps(chain.predictions / name / f"{image_id}.npz") for name in ("Combined_CAM",
                                                                                                  CAMS))
        np.testing.assert_array_equal(combined["keys"], original["keys"])
        assert combined["hr_cam"].shape == original["hr_cam"].shape
        assert np.all(combined["hr_cam"] >= original["hr_cam"]) and np.all(combined["hr_cam"] <= 2 * original["hr_cam"])
    empty = load_maps(chain.predictions / "Combined_CAM" / f"{EMPTY}.npz")
    assert empty["keys"].tolist() == [0] and empty["hr_cam"].shape == (0, *EMPTY_SIZE)


@pytest.mark.parametrize("script, argv", [
    ("train_classification_with_puzzle.py", ["--architecture", "resnet_mini", "--tag", "cls", *TINY, *SIZES]),
    ("inference_classification.py", ["--architecture", "resnet_mini", "--tag", "cls", *INLINE]),
    ("make_affinity_labels.py", ["--experiment_name", CAMS, *INLINE]),
    ("train_cpn.py", ["--network", "resnet_mini", "--weights", "none", *INLINE]),
])
def test_a_voc_folder_with_coco14_is_one_line(script, argv, toy_voc, tmp_path, monkeypatch, capsys):
    status = run_in_process(script, [*argv, "--data_dir", str(toy_voc), *COCO], tmp_path, monkeypatch)
    assert status == 2
    expected = (f"error: {toy_voc}: no annotations/ folder; is --data_dir the COCO 2014 folder (train2014/, "
                "val2014/, annotations/instances_{train,val}2014.json)?")
    assert capsys.readouterr().err.strip().splitlines() == [expected]
    assert files_under(tmp_path) == set()


def test_an_unknown_dataset_is_refused_by_name(toy_voc, tmp_path, monkeypatch, capsys):
    status = run_in_process("evaluate.py", ["--experiment_name", CAMS, "--data_dir", str(toy_voc), "--dataset",
                                            "unknown"], tmp_path, monkeypatch)
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert status == 2 and len(errors) == 1
    assert "argument --dataset: invalid choice: 'unknown' (choose from " in errors[0]
    assert "coco14" in errors[0] and "voc12" in errors[0]
