"""The toy dataset in COCO layout: the same scenes as toy_voc, annotations that the official API
reads, and masks rendered from them that equal toy_voc's ground truth under the class mapping."""
import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO

from wsss.data import coco, toy_coco, toy_voc, voc

SIZES = dict(min_size=64, max_size=96, show_progress=False)
VOC_CLASS_NAMES = voc.load_class_info()["class_names"]


@pytest.fixture(scope="module")
def toy_pair(tmp_path_factory):
    """toy_voc and toy_coco with the same scenes: VOC's train_aug + val = COCO's train2014 + val2014."""
    root = tmp_path_factory.mktemp("toy_pair")
    voc_root = toy_voc.generate(root / "voc", seed=1, num_train=2, num_train_aug=8, num_val=4, num_test=1, **SIZES)
    coco_root = toy_coco.generate(root / "coco", seed=1, num_train=8, num_val=4, **SIZES)
    return voc_root, coco_root


def class_lookup():
    """toy (VOC) class id → COCO class id; 0 and 255 stay."""
    lookup = np.arange(256, dtype=np.uint8)
    for index, name in enumerate(VOC_CLASS_NAMES):
        lookup[index + 1] = coco.CATEGORY_TO_CLASS[toy_coco.TOY_CATEGORIES[name]]
    return lookup


def paired_ids(voc_root, data):
    voc_ids = voc.read_image_ids("train_aug", voc_root) + voc.read_image_ids("val", voc_root)
    return list(zip(voc_ids, data.image_ids("train") + data.image_ids("val")))


def test_the_mapping_covers_the_20_classes_with_distinct_coco_categories():
    assert sorted(toy_coco.TOY_CATEGORIES) == sorted(VOC_CLASS_NAMES)
    classes = sorted(coco.CATEGORY_TO_CLASS[c] for c in toy_coco.TOY_CATEGORIES.values())
    assert classes == [1, 2, 3, 4, 5, 6, 7, 9, 15, 16, 17, 18, 19, 20, 40, 57, 58, 59, 61, 63]
    names = {name: coco.CLASS_NAMES[coco.CATEGORY_TO_CLASS[c] - 1] for name, c in toy_coco.TOY_CATEGORIES.items()}
    assert names["aeroplane"] == "airplane" and names["sofa"] == "couch" and names["tvmonitor"] == "tv"


def test_same_images_labels_and_masks_as_toy_voc(toy_pair):
    voc_root, coco_root = toy_pair
    data, reference = coco.COCOData(coco_root), voc.VOCData(voc_root)
    lookup = class_lookup()
    pairs = paired_ids(voc_root, data)
    assert [coco_id for _, coco_id in pairs][:2] == ["COCO_train2014_000000000001", "COCO_train2014_000000000002"]
    assert pairs[-1][1] == "COCO_val2014_000000000012"
    for voc_id, coco_id in pairs:
        assert data.image_path(coco_id).read_bytes() == reference.image_path(voc_id).read_bytes()
        truth = lookup[reference.mask(voc_id)]
        mask = coco.render_mask(data.record(coco_id))
        scored = truth != 255
        np.testing.assert_array_equal(mask[scored], truth[scored])
        assert set(np.unique(mask[~scored])) <= set(np.unique(truth[scored]))  # the void band: either side
        expected = np.zeros(80, dtype=np.float32)
        expected[lookup[1:21][reference.label(voc_id) == 1] - 1] = 1
        np.testing.assert_array_equal(data.label(coco_id), expected)


def test_overlapping_annotations_make_the_painting_order_matter(toy_pair):
    _, coco_root = toy_pair
    records = coco.COCOData(coco_root).records("train2014")
    changed = 0
    for record in records.values():
        reordered = coco.ImageRecord(record.name, record.number, record.height, record.width)
        reordered.annotations = record.annotations[::-1]
        changed += not np.array_equal(coco.render_mask(record), coco.render_mask(reordered))
    assert changed >= 1


def test_the_official_api_reads_the_files_and_renders_the_same_masks(toy_pair):
    """The IRN-derived procedure through pycocotools' COCO class (non-crowd annotations, annToMask,
    painted in order) as the reference."""
    _, coco_root = toy_pair
    for split in coco.SPLITS:
        with contextlib.redirect_stdout(io.StringIO()):
            api = COCO(str(coco_root / "annotations" / f"instances_{split}.json"))
        records = coco.COCOData(coco_root).records(split)
        assert sorted(api.getImgIds()) == [record.number for record in records.values()]
        assert len(api.getCatIds()) == 80
        for record in records.values():
            reference = np.zeros((record.height, record.width), dtype=np.uint8)
            for annotation in api.loadAnns(api.getAnnIds(imgIds=record.number, iscrowd=False)):
                reference[api.annToMask(annotation) == 1] = coco.CATEGORY_TO_CLASS[annotation["category_id"]]
            np.testing.assert_array_equal(coco.render_mask(record), reference)


def test_annotations_describe_their_instances(toy_pair):
    _, coco_root = toy_pair
    instances = json.loads((coco_root / "annotations" / "instances_val2014.json").read_text())
    ids = [a["id"] for a in instances["annotations"]]
    assert ids == sorted(ids) and ids[0] > 1  # numbered after train2014's
    for annotation in instances["annotations"]:
        assert annotation["iscrowd"] == 0 and isinstance(annotation["segmentation"]["counts"], str)
        image = next(i for i in instances["images"] if i["id"] == annotation["image_id"])
        from pycocotools import mask as mask_utils

        pixels = mask_utils.decode(coco.instance_rle(annotation["segmentation"], image["height"], image["width"]))
        ys, xs = np.nonzero(pixels)
        assert annotation["area"] == int(pixels.sum())
        assert annotation["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]


def test_skips_a_complete_folder_and_regenerates_cleanly(tmp_path):
    root = toy_coco.generate(tmp_path / "coco", num_train=4, num_val=2, **SIZES)
    (root / "mask" / "train2014").mkdir(parents=True)
    (root / "mask" / "train2014" / "COCO_train2014_000000000001.png").write_bytes(b"rendered earlier")
    stamp = (root / "annotations" / "instances_train2014.json").stat().st_mtime_ns
    toy_coco.generate(root, num_train=4, num_val=2, **SIZES)
    assert (root / "annotations" / "instances_train2014.json").stat().st_mtime_ns == stamp
    assert (root / "mask" / "train2014" / "COCO_train2014_000000000001.png").exists()

    toy_coco.generate(root, num_train=2, num_val=1, **SIZES)
    assert sorted(p.name for p in (root / "train2014").iterdir()) == \
        ["COCO_train2014_000000000001.jpg", "COCO_train2014_000000000002.jpg"]
    assert sorted(p.name for p in (root / "val2014").iterdir()) == ["COCO_val2014_000000000003.jpg"]
    assert not list((root / "mask" / "train2014").iterdir())  # masks of the old annotations are gone
    assert json.loads((root / "toy_coco.json").read_text())["images"] == {"train2014": 2, "val2014": 1}


def test_cli_and_argument_checks(tmp_path, capsys):
    toy_coco.main(["--out_dir", str(tmp_path / "cli"), "--num_train", "2", "--num_val", "1", "--min_size", "48",
                   "--max_size", "48", "--show_progress", "False"])
    assert "toy COCO dataset ready" in capsys.readouterr().out
    assert len(coco.COCOData(tmp_path / "cli").image_ids("train")) == 2
    with pytest.raises(ValueError, match="min_size"):
        toy_coco.generate(tmp_path / "x", min_size=16, max_size=8)
    with pytest.raises(ValueError, match="some images"):
        toy_coco.generate(tmp_path / "x", num_train=0, num_val=0)
