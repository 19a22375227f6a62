"""make_coco_masks.py on the toy COCO layout: every mask, resumption, shards, one split, and
one-line refusals of missing or broken annotation files that write nothing. Command lines run as a
user runs them where the output matters; the other cases call the stage in this process."""
import argparse
import json
import os
import shutil

import numpy as np
import pytest
from stage_runner import run_stage

from wsss.data import coco
from wsss.data.toy_coco import generate
from wsss.stages import coco_masks
from wsss.utils.errors import StageError
from wsss.utils.files import load_label_png


@pytest.fixture(scope="module")
def toy_coco(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("toy_coco") / "coco", num_train=6, num_val=3, min_size=48, max_size=64,
                    show_progress=False)


def fresh_copy(toy_coco, tmp_path):
    return shutil.copytree(toy_coco, tmp_path / "coco", ignore=shutil.ignore_patterns("mask"))


def run_here(*flags):
    parser = argparse.ArgumentParser()
    coco_masks.add_arguments(parser)
    return coco_masks.run(parser.parse_args([str(flag) for flag in flags]))


def written(folder):
    return sorted(path.stem for path in folder.glob("*.png")) if folder.is_dir() else []


def test_renders_every_mask_and_a_rerun_skips_them(toy_coco, tmp_path):
    root = fresh_copy(toy_coco, tmp_path)
    result = run_stage("make_coco_masks.py", "--data_dir", root, "--num_workers", "2", cwd=tmp_path)
    assert "train2014: 6 images, 6 masks to render" in result.stdout
    data = coco.COCOData(root)
    for split, domain in (("train2014", "train"), ("val2014", "val")):
        ids = data.image_ids(domain)
        assert written(root / "mask" / split) == ids
        for image_id in ids:
            np.testing.assert_array_equal(load_label_png(data.mask_path(image_id)),
                                          coco.render_mask(data.record(image_id)))
    data.check_masks(data.image_ids("val"), "val")
    stamps = [path.stat().st_mtime_ns for path in sorted((root / "mask").rglob("*.png"))]
    run_here("--data_dir", root, "--num_workers", "0")
    assert [path.stat().st_mtime_ns for path in sorted((root / "mask").rglob("*.png"))] == stamps


def test_shards_split_the_images_and_one_split_can_be_chosen(toy_coco, tmp_path):
    root = fresh_copy(toy_coco, tmp_path)
    ids = coco.COCOData(root).image_ids("train")
    run_here("--data_dir", root, "--splits", "train2014", "--shard", "1/2", "--mask_dir", tmp_path / "masks",
             "--num_workers", "0")
    assert written(tmp_path / "masks" / "train2014") == ids[1::2]
    assert not (tmp_path / "masks" / "val2014").exists()
    run_here("--data_dir", root, "--splits", "train2014", "--shard", "0/2", "--mask_dir", tmp_path / "masks",
             "--num_workers", "0")
    assert written(tmp_path / "masks" / "train2014") == ids


def test_missing_and_broken_annotation_files_are_one_line_errors(toy_coco, tmp_path):
    root = fresh_copy(toy_coco, tmp_path)
    annotations = root / "annotations"
    (annotations / "instances_val2014.json").unlink()
    result = run_stage("make_coco_masks.py", "--data_dir", root, cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {annotations / 'instances_val2014.json'}: annotation file not found; unpack "
        "annotations_trainval2014.zip into --data_dir (annotations/instances_train2014.json, instances_val2014.json)"]
    assert not (root / "mask").exists()  # checked before train2014 was rendered

    text = (annotations / "instances_train2014.json").read_text()
    (annotations / "instances_train2014.json").write_text(text[: len(text) // 2])
    with pytest.raises(StageError, match="instances_train2014.json: not valid JSON"):
        run_here("--data_dir", root, "--splits", "train2014")
    instances = json.loads(text)
    instances["annotations"][0]["category_id"] = 12
    (annotations / "instances_train2014.json").write_text(json.dumps(instances))
    with pytest.raises(StageError, match="instances_train2014.json: annotation 1: category 12 is none of the 80"):
        run_here("--data_dir", root, "--splits", "train2014")
    with pytest.raises(StageError, match="data_dir not found"):
        run_here("--data_dir", tmp_path / "absent")
    assert not (root / "mask").exists()


def test_help_states_the_convention(tmp_path):
    text = run_stage("make_coco_masks.py", "--help", cwd=tmp_path).stdout
    for phrase in ("ascending COCO category id", "crowd regions stay background", "later instance",
                   "without annotations is all background", "mask/train2014/COCO_train2014_000000000009.png",
                   "--shard", "(default: ../coco2014/)", "mask/{split}.labels.npz"):
        assert phrase in " ".join(text.split()), phrase


def split_labels_from_annotations(root, split):
    records = coco.read_instances(root / "annotations" / f"instances_{split}.json", split)
    return list(records), np.stack([coco.image_label(record) for record in records.values()])


def test_the_label_index_lists_and_labels_without_the_annotation_file(toy_coco, tmp_path, monkeypatch, capsys):
    root = fresh_copy(toy_coco, tmp_path)
    run_here("--data_dir", root, "--num_workers", "0")
    expected = {split: split_labels_from_annotations(root, split) for split in coco.SPLITS}
    assert sorted(path.name for path in (root / "mask").glob("*.npz")) == ["train2014.labels.npz",
                                                                           "val2014.labels.npz"]

    def no_annotation_file(*_):
        raise AssertionError("the annotation file was read")

    monkeypatch.setattr(coco, "read_instances", no_annotation_file)
    capsys.readouterr()  # make_coco_masks' progress bars
    data = coco.COCOData(root)
    for split, domain in (("train2014", "train"), ("val2014", "val")):
        ids, labels = expected[split]
        assert data.image_ids(domain) == ids
        np.testing.assert_array_equal(np.stack([data.label(image_id) for image_id in ids]), labels)
        assert data.label(ids[0]).dtype == np.float32
    assert capsys.readouterr().err == ""
    with pytest.raises(StageError, match="COCO_train2014_000000999999 is not in the annotations"):
        data.label("COCO_train2014_000000999999")


def test_a_changed_annotation_file_or_no_index_reads_the_annotations_with_one_note(toy_coco, tmp_path, caplog):
    root = fresh_copy(toy_coco, tmp_path)
    run_here("--data_dir", root, "--num_workers", "0")
    annotation = root / "annotations" / "instances_train2014.json"
    ids, labels = split_labels_from_annotations(root, "train2014")
    index = root / "mask" / "train2014.labels.npz"
    status = annotation.stat()

    def other_format():
        with np.load(index) as arrays:
            np.savez(index, **{**arrays, "format": np.int64(coco.LABEL_INDEX_FORMAT + 1)})

    changes = (lambda: os.utime(annotation, ns=(status.st_atime_ns, status.st_mtime_ns + 10**9)), other_format,
               index.unlink)
    for change in changes:
        if change is not changes[0]:
            run_here("--data_dir", root, "--num_workers", "0")  # an up-to-date index again
        change()
        caplog.clear()
        for _ in range(2):  # a second stage object in the same process reuses what the first read
            data = coco.COCOData(root)
            assert data.image_ids("train") == ids
            np.testing.assert_array_equal(np.stack([data.label(image_id) for image_id in ids]), labels)
        assert [record.getMessage() for record in caplog.records] == [
            f"note: {index} is missing or out of date; reading {annotation} instead (about 15 s and 3 GB per process "
            "for train2014; make_coco_masks.py writes the index)"]
    run_here("--data_dir", root, "--num_workers", "0")  # writes the index again, for the annotation file as it is
    caplog.clear()
    assert coco.read_label_index(index, annotation).ids == ids and coco.COCOData(root).image_ids("train") == ids
    assert not caplog.records


@pytest.mark.parametrize("content", [b"not a zip", "float labels", "format of two numbers"])
def test_a_damaged_label_index_is_one_stage_error(toy_coco, tmp_path, content):
    root = fresh_copy(toy_coco, tmp_path)
    run_here("--data_dir", root, "--num_workers", "0")
    index = root / "mask" / "train2014.labels.npz"
    if isinstance(content, bytes):
        index.write_bytes(content)
    else:
        with np.load(index) as arrays:
            ids, labels, stamp = arrays["ids"], arrays["labels"], arrays["annotation_stamp"]
        if content == "float labels":
            np.savez(index, format=np.int64(coco.LABEL_INDEX_FORMAT), ids=ids,
                     labels=np.zeros((len(ids), 80), np.float32), annotation_stamp=stamp)
        else:
            np.savez(index, format=np.array([1, 2]), ids=ids, labels=labels, annotation_stamp=stamp)
    with pytest.raises(StageError, match=f"{index}: damaged label index .*run make_coco_masks.py again"):
        coco.COCOData(root).image_ids("train")


def test_ground_truth_is_ready_with_every_mask_and_both_label_indexes(toy_coco, tmp_path):
    """The runner's check that make_coco_masks.py has nothing left to do."""
    root = fresh_copy(toy_coco, tmp_path)
    assert not coco.ground_truth_ready(root)
    run_here("--data_dir", root, "--num_workers", "0")
    assert coco.ground_truth_ready(root)
    val_mask = sorted((root / "mask" / "val2014").glob("*.png"))[0]
    index = root / "mask" / "train2014.labels.npz"
    for damage in (val_mask.unlink, index.unlink, lambda: index.write_bytes(b"damaged")):
        damage()
        assert not coco.ground_truth_ready(root)
        run_here("--data_dir", root, "--num_workers", "0")
        assert coco.ground_truth_ready(root)
