import numpy as np
import pytest
from PIL import Image

from wsss.data.voc import load_class_info, load_mask, one_hot, parse_tags, read_image_ids, voc_palette
from wsss.utils.errors import StageError

CLASS_DIC = load_class_info()["class_dic"]


def write_xml(path, objects, width=100, height=80):
    body = "".join(
        f"<object><name>{name}</name><bndbox><xmin>{box[0]}</xmin><ymin>{box[1]}</ymin>"
        f"<xmax>{box[2]}</xmax><ymax>{box[3]}</ymax></bndbox></object>" for name, box in objects)
    path.write_text(f"<annotation><size><width>{width}</width><height>{height}</height><depth>3</depth></size>{body}</annotation>")
    return path


def test_tags_skip_degenerate_boxes_after_clipping(tmp_path):
    xml = write_xml(tmp_path / "a.xml", [
        ("cat", (10, 10, 50, 50)),
        ("dog", (20, 30, 20, 60)),        # zero width
        ("person", (150, 10, 200, 40)),   # clipped to x = 99..99: zero width
        ("bird", ("5.7", "3", "5.2", "9")),  # integer part: 5..5, zero width
        ("cat", (0, 0, "99.9", 79)),      # duplicate class
        ("car", (-5, -5, 3, 2)),          # clipped to 0..3 × 0..2: valid
    ])
    names = parse_tags(xml, CLASS_DIC)
    assert names == ["cat", "cat", "car"]
    label = one_hot(names, CLASS_DIC)
    assert label.dtype == np.float32 and label.sum() == 2 and label[CLASS_DIC["cat"]] == 1 and label[CLASS_DIC["car"]] == 1


def test_unknown_class_and_empty_annotation_are_errors(tmp_path):
    with pytest.raises(StageError, match="unknown class name.*'kitten'"):
        parse_tags(write_xml(tmp_path / "b.xml", [("kitten", (1, 1, 5, 5))]), CLASS_DIC)
    with pytest.raises(StageError, match="no object with a valid box"):
        parse_tags(write_xml(tmp_path / "c.xml", [("cat", (1, 1, 1, 5))]), CLASS_DIC)
    with pytest.raises(StageError, match="annotation not found"):
        parse_tags(tmp_path / "missing.xml", CLASS_DIC)
    (tmp_path / "d.xml").write_text("<annotation><size>")
    with pytest.raises(StageError, match="malformed"):
        parse_tags(tmp_path / "d.xml", CLASS_DIC)


def test_list_lookup_prefers_the_dataset_and_strips_crlf(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert read_image_ids("train_aug")[:2] == ["2007_000032", "2007_000039"]  # repository list, CRLF
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.txt").write_text("local_1\r\nlocal_2\r\n")
    assert read_image_ids("train") == ["local_1", "local_2"]
    lists = tmp_path / "voc" / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    (lists / "train.txt").write_text("own_1\n\nown_2\n")
    assert read_image_ids("train", tmp_path / "voc") == ["own_1", "own_2"]
    with pytest.raises(StageError, match="image list 'nosuch' not found"):
        read_image_ids("nosuch", tmp_path / "voc")


def test_palette_mask_reading_and_validation(tmp_path):
    palette = voc_palette()
    assert palette[3:6] == [128, 0, 0] and palette[15 * 3:16 * 3] == [192, 128, 128]
    mask = np.array([[0, 1, 255], [20, 3, 3]], np.uint8)
    image = Image.fromarray(mask, "P")
    image.putpalette(palette)
    image.save(tmp_path / "m.png")
    assert np.array_equal(load_mask(tmp_path / "m.png"), mask)
    Image.fromarray(np.array([[0, 21]], np.uint8), "L").save(tmp_path / "bad.png")
    with pytest.raises(StageError, match=r"values \[21\] outside"):
        load_mask(tmp_path / "bad.png")
