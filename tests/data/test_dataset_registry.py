"""The dataset registry: names, class counts, and `voc12` behaving exactly as wsss.data.voc."""
import numpy as np
import pytest

from wsss.data import coco, voc
from wsss.data.dataset_registry import DATASETS, get_dataset


def test_unknown_names_are_refused_with_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown dataset 'cityscapes'; valid datasets: voc12, coco14"):
        get_dataset("cityscapes")
    with pytest.raises(ValueError, match="valid datasets: voc12, coco14"):
        get_dataset("VOC12")
    assert get_dataset("coco14") is DATASETS["coco14"]


def test_class_counts_and_names():
    voc12, coco14 = get_dataset("voc12"), get_dataset("coco14")
    assert (voc12.num_classes, voc12.num_classes_with_background) == (20, 21)
    assert (coco14.num_classes, coco14.num_classes_with_background) == (80, 81)
    assert voc12.class_names() == tuple(voc.load_class_info()["class_names"])
    assert voc12.class_names()[0] == "aeroplane" and len(voc12.class_names()) == 20
    names = coco14.class_names()
    assert len(names) == 80 and names[0] == "person" and names[39] == "bottle" and names[79] == "toothbrush"


def test_voc_class_names_follow_a_local_metadata_file(tmp_path, monkeypatch):
    info = voc.load_class_info()
    info["class_names"] = ["renamed"] + info["class_names"][1:]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "VOC_2012.json").write_text(__import__("json").dumps(info))
    monkeypatch.chdir(tmp_path)
    assert get_dataset("voc12").class_names()[0] == "renamed"


def test_palettes_extend_the_voc_colours():
    voc_colours = np.asarray(voc.voc_palette()).reshape(256, 3)
    assert get_dataset("voc12").palette() == voc.voc_palette()
    colours = np.asarray(get_dataset("coco14").palette()).reshape(256, 3)
    np.testing.assert_array_equal(colours[:21], voc_colours[:21])
    np.testing.assert_array_equal(colours[255], [224, 224, 192])  # void
    used = np.vstack([colours[:81], colours[255:]])
    assert len(np.unique(used, axis=0)) == 82  # background, 80 classes and void all differ
    # 80 = 0b1010000: bits 0,1,2 go to bit 7 of r,g,b, bits 3,4,5 to bit 6, bit 6 to bit 5 of r
    np.testing.assert_array_equal(colours[[1, 15, 80]], [[128, 0, 0], [192, 128, 128], [32, 64, 0]])


def test_voc12_entry_is_the_voc_module(toy_voc):
    voc12 = get_dataset("voc12")
    for domain in voc12.domains:
        assert voc12.image_ids(domain, toy_voc) == voc.read_image_ids(domain, toy_voc)
    folder, reference = voc12.open(toy_voc), voc.VOCData(toy_voc)
    assert isinstance(folder, voc.VOCData)
    image_id = voc.read_image_ids("val", toy_voc)[0]
    assert folder.image_path(image_id) == reference.image_path(image_id)
    np.testing.assert_array_equal(folder.label(image_id), reference.label(image_id))
    np.testing.assert_array_equal(folder.mask(image_id), reference.mask(image_id))
    np.testing.assert_array_equal(voc12.load_mask(reference.mask_path(image_id)), reference.mask(image_id))
    assert voc12.default_data_dir == "../VOCtrainval_11-May-2012/"


def test_coco14_entry_reads_a_coco_folder(tmp_path):
    from wsss.data.toy_coco import generate

    root = generate(tmp_path / "coco", num_train=3, num_val=2, min_size=48, max_size=64, show_progress=False)
    coco14 = get_dataset("coco14")
    assert coco14.image_ids("train", root) == [coco.image_name("train2014", n) for n in (1, 2, 3)]
    assert coco14.image_ids("val", root) == coco14.image_ids("val2014", root) == \
        [coco.image_name("val2014", n) for n in (4, 5)]
    for domain in coco14.domains:
        assert coco14.image_ids(domain, root)
    folder = coco14.open(root)
    assert isinstance(folder, coco.COCOData)
    image_id = coco14.image_ids("val", root)[0]
    assert folder.image(image_id).size == tuple(reversed(np.asarray(folder.image(image_id)).shape[:2]))
    assert folder.label(image_id).shape == (80,) and folder.label(image_id).sum() >= 1
    assert coco14.load_mask is coco.load_mask
