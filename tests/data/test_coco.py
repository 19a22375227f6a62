"""COCO 2014 labels and masks on a hand-made annotation file: overlapping instances (file order
decides), a crowd region, a multi-part polygon, uncompressed and compressed RLE, an image without
annotations, an image with only a crowd region and a degenerate polygon; the folder object."""
import copy
import json

import numpy as np
import pytest
from PIL import Image

from wsss.data import coco
from wsss.utils.errors import StageError

H, W = 4, 6
CROWD_COLUMN_5 = {"size": [H, W], "counts": [20, 4]}  # column-major runs: 20 off, then column 5 on


def bottom_left_pixel():
    pixel = np.zeros((H, W), dtype=np.uint8)
    pixel[3, 0] = 1
    return coco.encode_instance(pixel)


def hand_made_instances():
    return {
        "images": [
            {"id": 25, "file_name": "COCO_train2014_000000000025.jpg", "height": 2, "width": 3},
            {"id": 9, "file_name": "COCO_train2014_000000000009.jpg", "height": H, "width": W},
            {"id": 30, "file_name": "COCO_train2014_000000000030.jpg", "height": 2, "width": 2},
        ],
        "annotations": [
            # person: rows 0-1 × cols 0-2, plus row 2 × cols 0-1 (two polygons, one instance)
            {"id": 1, "image_id": 9, "category_id": 1, "iscrowd": 0,
             "segmentation": [[0, 0, 3, 0, 3, 2, 0, 2], [0, 2, 2, 2, 2, 3, 0, 3]]},
            # dog (class 17): rows 1-3 × cols 2-4, over the person at (1, 2)
            {"id": 2, "image_id": 9, "category_id": 18, "iscrowd": 0, "segmentation": [[2, 1, 5, 1, 5, 4, 2, 4]]},
            # bottle (class 40), a crowd region: column 5; in the label, not in the mask
            {"id": 3, "image_id": 9, "category_id": 44, "iscrowd": 1, "segmentation": CROWD_COLUMN_5},
            # toothbrush (class 80), compressed RLE: the pixel (3, 0)
            {"id": 4, "image_id": 9, "category_id": 90, "iscrowd": 0, "segmentation": bottom_left_pixel()},
            # image 30: a crowd person and a cat given by a two-point polygon, which covers nothing
            {"id": 5, "image_id": 30, "category_id": 1, "iscrowd": 1, "segmentation": {"size": [2, 2], "counts": [1, 3]}},
            {"id": 6, "image_id": 30, "category_id": 17, "iscrowd": 0, "segmentation": [[0, 0, 1, 1]]},
        ],
        "categories": [{"id": category, "name": name} for category, name in coco.CATEGORIES],
    }


EXPECTED_MASK_9 = np.array([
    [1, 1, 1, 0, 0, 0],
    [1, 1, 17, 17, 17, 0],
    [1, 1, 17, 17, 17, 0],
    [80, 0, 17, 17, 17, 0],
], dtype=np.uint8)


def label_with(*class_ids):
    label = np.zeros(80, dtype=np.float32)
    label[[c - 1 for c in class_ids]] = 1
    return label


@pytest.fixture
def records():
    return coco.index_instances(hand_made_instances(), "train2014")


def test_categories_map_to_1_through_80_in_category_id_order():
    assert coco.NUM_CLASSES == 80 and len(coco.CLASS_NAMES) == 80
    assert coco.CATEGORY_TO_CLASS[1] == 1 and coco.CATEGORY_TO_CLASS[11] == 11
    assert coco.CATEGORY_TO_CLASS[13] == 12  # category 12 does not exist
    assert coco.CATEGORY_TO_CLASS[44] == 40 and coco.CATEGORY_TO_CLASS[67] == 61 and coco.CATEGORY_TO_CLASS[90] == 80
    assert coco.CLASS_NAMES[coco.CATEGORY_TO_CLASS[18] - 1] == "dog"
    assert sorted(coco.CATEGORY_TO_CLASS) == list(coco.CATEGORY_TO_CLASS)


def test_image_names():
    assert coco.image_name("train2014", 9) == "COCO_train2014_000000000009"
    assert coco.parse_image_name("COCO_val2014_000000581929") == ("val2014", 581929)
    for bad in ("000000000009", "COCO_train2017_000000000009", "COCO_val2014_42", "toy_000001"):
        with pytest.raises(ValueError, match="not a COCO 2014 image id"):
            coco.parse_image_name(bad)


def test_index_lists_images_in_ascending_id_with_annotations_in_file_order(records):
    assert list(records) == ["COCO_train2014_000000000009", "COCO_train2014_000000000025",
                             "COCO_train2014_000000000030"]
    record = records["COCO_train2014_000000000009"]
    assert (record.number, record.height, record.width) == (9, H, W)
    assert [a["id"] for a in record.annotations] == [1, 2, 3, 4]
    assert records["COCO_train2014_000000000025"].annotations == []


def test_labels_take_every_annotation_crowd_included(records):
    np.testing.assert_array_equal(coco.image_label(records["COCO_train2014_000000000009"]), label_with(1, 17, 40, 80))
    np.testing.assert_array_equal(coco.image_label(records["COCO_train2014_000000000025"]), label_with())
    np.testing.assert_array_equal(coco.image_label(records["COCO_train2014_000000000030"]), label_with(1, 16))
    assert coco.image_label(records["COCO_train2014_000000000009"]).dtype == np.float32


def test_mask_paints_non_crowd_instances_in_file_order(records):
    mask = coco.render_mask(records["COCO_train2014_000000000009"])
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, EXPECTED_MASK_9)


def test_a_later_annotation_covers_an_earlier_one():
    instances = hand_made_instances()
    instances["annotations"][0], instances["annotations"][1] = instances["annotations"][1], instances["annotations"][0]
    mask = coco.render_mask(coco.index_instances(instances, "train2014")["COCO_train2014_000000000009"])
    expected = EXPECTED_MASK_9.copy()
    expected[1, 2] = 1  # the person, now painted after the dog
    np.testing.assert_array_equal(mask, expected)


def test_image_without_annotations_or_with_crowd_only_is_background(records):
    np.testing.assert_array_equal(coco.render_mask(records["COCO_train2014_000000000025"]), np.zeros((2, 3)))
    np.testing.assert_array_equal(coco.render_mask(records["COCO_train2014_000000000030"]), np.zeros((2, 2)))


def test_crowd_rle_decodes_to_the_region_it_describes():
    rle = coco.instance_rle(CROWD_COLUMN_5, H, W)
    from pycocotools import mask as mask_utils

    expected = np.zeros((H, W), dtype=np.uint8)
    expected[:, 5] = 1
    np.testing.assert_array_equal(mask_utils.decode(rle), expected)
    assert coco.instance_rle([[0, 0, 1, 1]], H, W) is None


def test_encode_instance_is_json_ready_and_round_trips():
    pixel = np.zeros((3, 5), dtype=bool)
    pixel[1:3, 2] = True
    rle = coco.encode_instance(pixel)
    assert rle["size"] == [3, 5] and isinstance(rle["counts"], str)
    rle = json.loads(json.dumps(rle))
    from pycocotools import mask as mask_utils

    np.testing.assert_array_equal(mask_utils.decode(coco.instance_rle(rle, 3, 5)), pixel.astype(np.uint8))


def broken(change):
    instances = hand_made_instances()
    change(instances)
    return instances


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("annotations"), "needs the lists 'images' and 'annotations'"),
    (lambda d: d["images"][1].update(file_name="000000000009.jpg"), "is this instances_train2014.json"),
    (lambda d: d["images"][1].update(file_name="COCO_val2014_000000000009.jpg"), "is this instances_train2014.json"),
    (lambda d: d["images"][1].pop("height"), "lacks id, height, width or file_name"),
    (lambda d: d["images"][1].update(width=0), "positive integers"),
    (lambda d: d["images"].append(copy.deepcopy(d["images"][0])), "listed twice"),
    (lambda d: d["annotations"][0].update(category_id=12), "none of the 80 COCO categories"),
    (lambda d: d["annotations"][0].update(image_id=7), "image 7 is not in 'images'"),
    (lambda d: d["annotations"][0].update(segmentation=[[0, 0, 3]]), "list of x, y numbers"),
    (lambda d: d["annotations"][0].update(segmentation=[[0, 0, 3, 0, 3, "x"]]), "list of x, y numbers"),
    (lambda d: d["annotations"][0].update(segmentation=[[0, 0, 3, 0, 3, None]]), "list of x, y numbers"),
    (lambda d: d["annotations"][0].update(segmentation=[[0, 0, 3, 0, 3, 1e9]]), "list of x, y numbers near"),
    (lambda d: d["annotations"][0].update(segmentation=[[[0, 0], [3, 0], [3, 2]]]), "list of x, y numbers"),
    (lambda d: d["annotations"][2].update(segmentation={"size": [H, W], "counts": [20, 3]}), "summing to"),
    (lambda d: d["annotations"][2].update(segmentation={"size": [W, H], "counts": [20, 4]}), "is not the image's"),
    (lambda d: d["annotations"][2].update(segmentation={"counts": [24]}), "neither polygons nor an RLE"),
])
def test_index_refuses_malformed_files(change, message):
    with pytest.raises(ValueError, match=message):
        coco.index_instances(broken(change), "train2014")


# ---- the folder

def write_folder(root, instances=None, val_instances=None):
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "instances_train2014.json").write_text(json.dumps(instances or hand_made_instances()))
    if val_instances is not None:
        (root / "annotations" / "instances_val2014.json").write_text(json.dumps(val_instances))
    return root


def test_folder_lists_paths_labels(tmp_path):
    data = coco.COCOData(write_folder(tmp_path / "coco"))
    ids = ["COCO_train2014_000000000009", "COCO_train2014_000000000025", "COCO_train2014_000000000030"]
    assert data.image_ids("train") == data.image_ids("train_aug") == data.image_ids("train2014") == ids
    assert data.image_path(ids[0]) == tmp_path / "coco" / "train2014" / f"{ids[0]}.jpg"
    assert data.mask_path("COCO_val2014_000000000042") == tmp_path / "coco" / "mask" / "val2014" / \
        "COCO_val2014_000000000042.png"
    np.testing.assert_array_equal(data.label(ids[0]), label_with(1, 17, 40, 80))
    (tmp_path / "list.txt").write_text(f"{ids[2]}\r\n\n/train2014/{ids[0]}.jpg\n")
    assert data.image_ids(str(tmp_path / "list.txt")) == [ids[2], ids[0]]


def test_folder_refusals_are_one_line_stage_errors(tmp_path):
    with pytest.raises(StageError, match="data_dir not found"):
        coco.COCOData(tmp_path / "absent")
    root = write_folder(tmp_path / "coco")
    data = coco.COCOData(root)
    with pytest.raises(StageError, match="instances_val2014.json: annotation file not found"):
        data.image_ids("val")
    with pytest.raises(StageError, match="image list 'test' not found"):
        data.image_ids("test")
    with pytest.raises(StageError, match="not in the annotations"):
        data.label("COCO_train2014_000000000010")
    (tmp_path / "bad.txt").write_text("2007_000032\n")
    with pytest.raises(StageError, match="not a COCO 2014 image id"):
        data.image_ids(str(tmp_path / "bad.txt"))
    with pytest.raises(StageError, match="ground-truth mask not found"):
        data.check_masks(["COCO_train2014_000000000009"], "train")
    corrupt = write_folder(tmp_path / "corrupt")
    (corrupt / "annotations" / "instances_train2014.json").write_text('{"images": [')
    with pytest.raises(StageError, match="not valid JSON"):
        coco.COCOData(corrupt).image_ids("train")
    wrong = write_folder(tmp_path / "wrong", broken(lambda d: d["annotations"][0].update(category_id=91)))
    with pytest.raises(StageError, match=r"instances_train2014.json: annotation 1: category 91"):
        coco.COCOData(wrong).label("COCO_train2014_000000000009")


def test_masks_are_read_with_values_checked_against_81_classes(tmp_path):
    path = tmp_path / "m.png"
    Image.fromarray(np.array([[0, 80], [255, 7]], dtype=np.uint8), mode="L").save(path)
    np.testing.assert_array_equal(coco.load_mask(path), [[0, 80], [255, 7]])
    Image.fromarray(np.array([[0, 81]], dtype=np.uint8), mode="L").save(path)
    with pytest.raises(StageError, match=r"values \[81\] outside 0-80/255"):
        coco.load_mask(path)


def test_undecodable_compressed_rle_is_refused_when_rendering():
    instances = broken(lambda d: d["annotations"][3].update(segmentation={"size": [H, W], "counts": "abc"}))
    record = coco.index_instances(instances, "train2014")["COCO_train2014_000000000009"]
    with pytest.raises(ValueError, match=r"annotation 4 \(image 9\): undecodable segmentation"):
        coco.render_mask(record)
