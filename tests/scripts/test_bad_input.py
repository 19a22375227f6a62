"""Every stage script on bad input: exit status 2, one `error:` line naming the file, what is wrong
and what to do, and no output file left behind (not even a temporary).

The stages run in this process (`run_script`, as their `__main__` does) on a copy of a ready
workspace (tests/workspace.py: random-initialised checkpoints and fabricated input folders), so
each case costs well under a second. Bad content found while images are processed (a corrupt image,
a map file of the wrong shape) is put on the first listed image: in list order, nothing has been
written when it is met (`test_outputs_before_a_bad_image_are_kept_complete` covers the other case).
"""
import os
import pathlib
import shutil
import types

import numpy as np
import pytest
import workspace
from PIL import Image
from workspace import CAMS, PSEUDO_LABELS, RW, STAGES, TRAINERS, command, files_under, output, temporaries

from wsss.data.voc import read_image_ids
from wsss.utils.files import load_maps, save_cams, save_rw

AFFINITY_LABELS = workspace.AFFINITY_LABELS
PER_DOMAIN = tuple(stage for stage in STAGES if stage not in TRAINERS)
READS_IMAGES = tuple(stage for stage in STAGES if stage != "evaluate.py")


@pytest.fixture(scope="module")
def template(toy_voc, tmp_path_factory):
    base = tmp_path_factory.mktemp("bad_input_template")
    data = pathlib.Path(shutil.copytree(toy_voc, base / "voc"))
    workspace.build(data, base / "root")
    return base


@pytest.fixture
def ws(template, tmp_path):
    """A private copy of the workspace: the dataset and the prediction folders copied, the
    checkpoints linked (nothing here writes over them)."""
    data = pathlib.Path(shutil.copytree(template / "voc", tmp_path / "voc"))
    root = tmp_path / "root"
    shutil.copytree(template / "root" / "experiments" / "predictions", root / "experiments" / "predictions")
    models = root / "experiments" / "models"
    models.mkdir()
    for checkpoint in (template / "root" / "experiments" / "models").iterdir():
        (models / checkpoint.name).symlink_to(checkpoint)
    return types.SimpleNamespace(data=data, root=root, tmp=tmp_path,
                                 predictions=root / "experiments" / "predictions")


def first_id(ws, domain="train_aug"):
    return read_image_ids(domain, ws.data)[0]


def with_flag(argv, flag, value):
    """`argv` with `flag`'s value replaced (or the flag appended)."""
    argv = list(argv)
    if flag in argv:
        argv[argv.index(flag) + 1] = str(value)
    else:
        argv += [flag, str(value)]
    return argv


def expect_error(ws, monkeypatch, capsys, script, *fragments, argv=None, run_records=False):
    """Run `script`; it must exit with status 2 and one error line holding every fragment, and leave
    no new file (a trainer stopped mid-run may leave its log records, never a checkpoint)."""
    before = files_under(ws.root)
    status = workspace.run_in_process(script, command(script, ws.data) if argv is None else argv, ws.root,
                                      monkeypatch)
    stderr = capsys.readouterr().err
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert status == 2, stderr[-2000:]
    assert len(errors) == 1, stderr[-2000:]
    for fragment in fragments:
        if isinstance(fragment, pathlib.Path) and fragment.is_relative_to(ws.root):
            fragment = fragment.relative_to(ws.root)  # the stages name their outputs from the working directory
        assert str(fragment) in errors[0], errors[0]
    new = sorted(files_under(ws.root) - before)
    if run_records:
        new = [name for name in new if not name.startswith(("experiments/logs/", "experiments/data/",
                                                             "experiments/tensorboards/"))]
    assert new == [], new
    assert temporaries(ws.tmp) == []
    return errors[0]


def domain_list(ws, domain="train_aug"):
    return ws.data / "ImageSets" / "Segmentation" / f"{domain}.txt"


# --- data folder and image lists -------------------------------------------------------------------

@pytest.mark.parametrize("script", STAGES)
def test_missing_data_dir(ws, monkeypatch, capsys, script):
    nowhere = ws.tmp / "nowhere"
    value = nowhere / "SegmentationClass" if script == "evaluate.py" else nowhere
    fragment = "ground-truth folder not found" if script == "evaluate.py" else "data_dir not found"
    expect_error(ws, monkeypatch, capsys, script, nowhere, fragment,
                 argv=with_flag(command(script, ws.data), "--data_dir", value))


@pytest.mark.parametrize("script", STAGES)
def test_empty_data_dir(ws, monkeypatch, capsys, script):
    empty = ws.tmp / "empty"
    (empty / "SegmentationClass").mkdir(parents=True)
    value, fragment = ((empty / "SegmentationClass", "holds no PNG masks") if script == "evaluate.py"
                       else (empty, "no JPEGImages/ folder"))
    expect_error(ws, monkeypatch, capsys, script, empty, fragment,
                 argv=with_flag(command(script, ws.data), "--data_dir", value))


@pytest.mark.parametrize("script", PER_DOMAIN)
def test_missing_list(ws, monkeypatch, capsys, script):
    expect_error(ws, monkeypatch, capsys, script, "image list 'nolist' not found", "--domain",
                 argv=with_flag(command(script, ws.data, domain="nolist"), "--domain", "nolist"))


def test_trainer_without_its_list_names_the_list_it_fell_back_to(ws, monkeypatch, capsys):
    """docs/design.md §2: without {data_dir}/ImageSets/Segmentation/train_aug.txt the repository's VOC list is used;
    its ids have no image here, and the error says which list they came from."""
    domain_list(ws).unlink()
    expect_error(ws, monkeypatch, capsys, "train_classification.py", "image not found (10582 of 10582 listed)",
                 "data/train_aug.txt")


@pytest.mark.parametrize("script", STAGES)
def test_empty_list(ws, monkeypatch, capsys, script):
    domain_list(ws).write_text("\n\n")
    expect_error(ws, monkeypatch, capsys, script, domain_list(ws), "image list is empty")


@pytest.mark.parametrize("script", READS_IMAGES)
def test_missing_image(ws, monkeypatch, capsys, script):
    image_id = first_id(ws)
    (ws.data / "JPEGImages" / f"{image_id}.jpg").unlink()
    expect_error(ws, monkeypatch, capsys, script, f"{image_id}.jpg: image not found (1 of 8 listed)",
                 domain_list(ws))


@pytest.mark.parametrize("script", STAGES)
def test_listed_id_that_does_not_exist(ws, monkeypatch, capsys, script):
    with domain_list(ws).open("a") as stream:
        stream.write("2099_000001\n")
    kind = "ground-truth mask not found" if script == "evaluate.py" else "image not found"
    expect_error(ws, monkeypatch, capsys, script, "2099_000001", f"{kind} (1 of 9 listed)")


# --- images, annotations, masks ---------------------------------------------------------------------

def truncated(data):
    return data[:len(data) // 2]


DAMAGES = {"garbage": lambda data: b"not an image", "truncated": truncated, "empty": lambda data: b""}


@pytest.mark.parametrize("script, damage", [
    *((script, damage) for script in ("inference_classification.py", "make_affinity_labels.py", "inference_rw.py",
                                      "make_pseudo_labels.py", "inference_segmentation.py") for damage in DAMAGES),
    ("train_segmentation.py", "truncated"),
])
def test_corrupt_image(ws, monkeypatch, capsys, script, damage):
    path = ws.data / "JPEGImages" / f"{first_id(ws)}.jpg"
    path.write_bytes(DAMAGES[damage](path.read_bytes()))
    expect_error(ws, monkeypatch, capsys, script, path, "unreadable image", run_records=script in TRAINERS)


@pytest.mark.parametrize("script", ["train_classification_with_puzzle.py", "inference_classification.py"])
def test_missing_annotation(ws, monkeypatch, capsys, script):
    path = ws.data / "Annotations" / f"{first_id(ws)}.xml"
    path.unlink()
    expect_error(ws, monkeypatch, capsys, script, path, "annotation not found")


def replace_object_names(text, name):
    parts = text.split("<name>")
    return "<name>".join([parts[0]] + [name + part[part.index("</name>"):] for part in parts[1:]])


def degenerate_boxes(text):
    """Every box collapsed to zero width (xmax = xmin)."""
    lines = text.splitlines()
    xmin = None
    for index, line in enumerate(lines):
        if "<xmin>" in line:
            xmin = line.split("<xmin>")[1].split("</xmin>")[0]
        if "<xmax>" in line:
            lines[index] = line.split("<xmax>")[0] + f"<xmax>{xmin}</xmax>"
    return "\n".join(lines)


@pytest.mark.parametrize("damage, fragment", [
    (lambda text: replace_object_names(text, "unicorn"), "unknown class name(s) ['unicorn']"),
    (degenerate_boxes, "no object with a valid box"),
    (lambda text: text[:len(text) // 2], "malformed VOC annotation"),
], ids=["unknown_class", "no_valid_object", "malformed"])
@pytest.mark.parametrize("script", ["train_classification.py", "inference_classification.py"])
def test_bad_annotation(ws, monkeypatch, capsys, script, damage, fragment):
    path = ws.data / "Annotations" / f"{first_id(ws)}.xml"
    path.write_text(damage(path.read_text()))
    expect_error(ws, monkeypatch, capsys, script, path, fragment)


@pytest.mark.parametrize("script, domain", [("train_classification.py", "train"), ("train_segmentation.py", "val"),
                                            ("evaluate.py", "train_aug")])
def test_missing_mask(ws, monkeypatch, capsys, script, domain):
    path = ws.data / "SegmentationClass" / f"{first_id(ws, domain)}.png"
    path.unlink()
    expect_error(ws, monkeypatch, capsys, script, path, "ground-truth mask not found (1 of")


def write_png(path, array, mode="L"):
    Image.fromarray(np.asarray(array, dtype=np.uint8), mode=mode).save(path)


LABEL_DAMAGES = {"garbage": "unreadable PNG", "rgb": "expected a grayscale or palette PNG",
                 "value_30": "values [30] outside 0-20/255"}


@pytest.mark.parametrize("script, folder, damage", [
    *(("evaluate.py", "gt", damage) for damage in LABEL_DAMAGES),
    ("train_segmentation.py", PSEUDO_LABELS, "value_30"),
    ("train_affinitynet.py", AFFINITY_LABELS, "garbage"),
], ids=lambda value: value.split("@")[-1] if isinstance(value, str) else None)
def test_bad_label_png(ws, monkeypatch, capsys, script, folder, damage):
    fragment = LABEL_DAMAGES[damage]
    image_id = first_id(ws)
    path = (ws.data / "SegmentationClass" if folder == "gt" else ws.predictions / folder) / f"{image_id}.png"
    if damage == "garbage":
        path.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    else:
        with Image.open(path) as image:
            label = np.array(image)
        if damage == "rgb":
            write_png(path, np.stack([label] * 3, axis=-1), mode="RGB")
        else:
            label[0, 0] = 30
            write_png(path, label)
    expect_error(ws, monkeypatch, capsys, script, path, fragment, run_records=script in TRAINERS)


def test_prediction_png_with_values_outside_the_classes(ws, monkeypatch, capsys):
    path = ws.predictions / AFFINITY_LABELS / f"{first_id(ws)}.png"
    with Image.open(path) as image:
        label = np.array(image)
    label[:2, :2] = 30  # neither a class nor 255 (which predicts no class, as published)
    write_png(path, label)
    argv = ["--experiment_name", AFFINITY_LABELS, "--domain", "train_aug", "--mode", "png", "--data_dir",
            ws.data / "SegmentationClass", "--num_workers", "1"]
    expect_error(ws, monkeypatch, capsys, "evaluate.py", path, "values [30] outside 0-20/255;", argv=list(map(str, argv)))


# --- inter-stage files ------------------------------------------------------------------------------

@pytest.mark.parametrize("script, folder, suffix, fragment", [
    ("make_affinity_labels.py", CAMS, "npz", "CAM file missing (1 of 8"),
    ("inference_rw.py", CAMS, "npz", "CAM file missing (1 of 8"),
    ("make_pseudo_labels.py", RW, "npz", "random-walk file missing (1 of 8"),
    ("train_affinitynet.py", AFFINITY_LABELS, "png", "affinity label missing (1 of 8"),
    ("train_segmentation.py", PSEUDO_LABELS, "png", "pseudo label missing (1 of 8"),
    ("evaluate.py", CAMS, "npz", "prediction missing (1 of 8"),
])
def test_missing_input_file(ws, monkeypatch, capsys, script, folder, suffix, fragment):
    image_id = first_id(ws)
    (ws.predictions / folder / f"{image_id}.{suffix}").unlink()
    expect_error(ws, monkeypatch, capsys, script, f"{folder}/{image_id}", fragment)


@pytest.mark.parametrize("script, folder", [("make_affinity_labels.py", CAMS), ("inference_rw.py", CAMS),
                                            ("make_pseudo_labels.py", RW), ("evaluate.py", CAMS)])
def test_corrupt_map_file(ws, monkeypatch, capsys, script, folder):
    path = ws.predictions / folder / f"{first_id(ws)}.npz"
    path.write_bytes(truncated(path.read_bytes()))
    expect_error(ws, monkeypatch, capsys, script, path, "unreadable map file")


def rewrite_maps(path, **changes):
    maps = {**load_maps(path), **changes}
    if "rw" in maps:
        save_rw(path, maps["keys"], maps["rw"])
    else:
        save_cams(path, maps["keys"], maps["cam"], maps["hr_cam"])


def other_size(maps_array):
    count, height, width = maps_array.shape
    return np.zeros((count, height + 3, width), np.float32)


@pytest.mark.parametrize("script, folder, change, fragment", [
    ("make_affinity_labels.py", CAMS, lambda m: {"hr_cam": other_size(m["hr_cam"])}, "'hr_cam' has shape"),
    ("inference_rw.py", CAMS, lambda m: {"cam": other_size(m["cam"])}, "'cam' has shape"),
    ("make_pseudo_labels.py", RW, lambda m: {"rw": m["rw"][:-1]}, "'rw' has shape"),
    ("evaluate.py", CAMS, lambda m: {"hr_cam": other_size(m["hr_cam"])}, "but the ground truth is"),
    ("make_pseudo_labels.py", RW, lambda m: {"keys": m["keys"][::-1].copy()}, "is not [0, c1+1, c2+1, ...]"),
    ("inference_rw.py", CAMS, lambda m: {"keys": np.r_[0, m["keys"][1:] + 30]}, "class ids 1-20"),
], ids=["hr_cam_size", "cam_size", "rw_count", "evaluate_size", "keys_order", "keys_range"])
def test_map_file_that_does_not_match_its_image(ws, monkeypatch, capsys, script, folder, change, fragment):
    path = ws.predictions / folder / f"{first_id(ws)}.npz"
    rewrite_maps(path, **change(load_maps(path)))
    expect_error(ws, monkeypatch, capsys, script, path, fragment)


def test_random_walk_file_given_as_cams(ws, monkeypatch, capsys):
    argv = with_flag(command("evaluate.py", ws.data), "--experiment_name", RW)
    expect_error(ws, monkeypatch, capsys, "evaluate.py", RW, "no 'hr_cam' array", "--mode npy expects", argv=argv)


# --- checkpoints, outputs, training ---------------------------------------------------------------

@pytest.mark.parametrize("script, flag, other", [("inference_classification.py", "--tag", "seg"),
                                                 ("inference_rw.py", "--model_name", "cls"),
                                                 ("inference_segmentation.py", "--tag", "aff")])
def test_checkpoint_of_another_architecture(ws, monkeypatch, capsys, script, flag, other):
    argv = with_flag(command(script, ws.data), flag, other)
    line = expect_error(ws, monkeypatch, capsys, script, f"{other}.pth", "checkpoint does not match the model",
                        "missing", "unexpected", argv=argv)
    assert "e.g. ['" in line  # the key names themselves


@pytest.mark.parametrize("script", STAGES)
def test_output_folder_not_writable(ws, monkeypatch, capsys, script):
    """As root (the test machine) permissions do not stop a write, so the output folder is made
    impossible another way: a regular file stands where the folder must be."""
    target = output(script, ws.root)
    if script in TRAINERS:
        blocked = ws.root / "experiments" / "logs"
    elif script == "evaluate.py":
        blocked = target.parent
    else:
        blocked = target
    blocked.parent.mkdir(parents=True, exist_ok=True)
    blocked.write_text("in the way")
    relative = blocked.relative_to(ws.root)
    line = expect_error(ws, monkeypatch, capsys, script, "output folder not writable", f"({relative} is not a folder)")
    assert line.startswith(f"error: {relative}: "), line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders; see the regular-file variant")
def test_output_folder_without_write_permission(ws, monkeypatch, capsys):
    ws.predictions.chmod(0o555)
    try:
        expect_error(ws, monkeypatch, capsys, "make_pseudo_labels.py", "output folder not writable",
                     "Permission denied")
    finally:
        ws.predictions.chmod(0o755)


def test_nan_loss_stops_and_keeps_the_best_checkpoint(ws, monkeypatch, capsys):
    """All-void pseudo labels: the cross-entropy over no pixel is NaN at the first iteration."""
    for path in (ws.predictions / PSEUDO_LABELS).iterdir():
        with Image.open(path) as image:
            write_png(path, np.full((image.height, image.width), 255))
    best = ws.root / "experiments" / "models" / "new.pth"
    best.write_bytes(b"the best checkpoint of an earlier run")
    expect_error(ws, monkeypatch, capsys, "train_segmentation.py", "loss is nan at iteration 1", "new.pth left as it was",
                 run_records=True)
    assert best.read_bytes() == b"the best checkpoint of an earlier run"


def test_outputs_before_a_bad_image_are_kept_complete(ws, monkeypatch, capsys):
    """A corrupt image met partway: the images before it keep their complete outputs, the bad one has
    none, nothing is half-written; once the image is replaced a rerun finishes the rest."""
    ids = read_image_ids("train_aug", ws.data)
    path = ws.data / "JPEGImages" / f"{ids[3]}.jpg"
    original = path.read_bytes()
    path.write_bytes(b"not an image")
    script = "make_affinity_labels.py"
    assert workspace.run_in_process(script, command(script, ws.data), ws.root, monkeypatch) == 2
    out_dir = output(script, ws.root)
    assert sorted(p.name for p in out_dir.iterdir()) == [f"{image_id}.png" for image_id in ids[:3]]
    for written in out_dir.iterdir():
        with Image.open(written) as image:
            image.load()
    path.write_bytes(original)
    assert workspace.run_in_process(script, command(script, ws.data), ws.root, monkeypatch) == 0
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(f"{image_id}.png" for image_id in ids)
    capsys.readouterr()
