"""The image-list formats the stages accept: a list name, a list file, plain ids, SEAM's pairs, and
the published `voc12/<name>.txt` defaults."""
import pytest

from wsss.data.voc import list_path, parse_image_list, read_image_ids
from wsss.utils.errors import StageError


def test_plain_ids_and_seam_pairs():
    text = ("2007_000032\r\n\r\n/JPEGImages/2007_000039.jpg /SegmentationClassAug/2007_000039.png\n"
            "2008_000002.jpg\n  toy_000004  \nid.with.dots\n")
    assert parse_image_list(text) == ["2007_000032", "2007_000039", "2008_000002", "toy_000004", "id.with.dots"]


def test_list_files_and_the_published_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    voc = tmp_path / "voc"
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    (voc / "ImageSets" / "Segmentation" / "train.txt").write_text("a\nb\n")
    (tmp_path / "mine.txt").write_text("/JPEGImages/c.jpg /SegmentationClassAug/c.png\n")
    assert read_image_ids("mine.txt", voc) == ["c"]
    assert read_image_ids(str(tmp_path / "mine.txt")) == ["c"]
    assert read_image_ids("voc12/train.txt", voc) == ["a", "b"]  # not here: looked up by its name
    assert list_path("voc12/train.txt", voc) == voc / "ImageSets" / "Segmentation" / "train.txt"
    (tmp_path / "voc12").mkdir()
    (tmp_path / "voc12" / "train.txt").write_text("/JPEGImages/d.jpg /SegmentationClassAug/d.png\n")
    assert read_image_ids("voc12/train.txt", voc) == ["d"]  # a file that exists is read
    with pytest.raises(StageError, match="lists/train.txt: image list file not found"):
        read_image_ids("lists/train.txt", voc)
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(StageError, match="empty.txt: image list is empty"):
        read_image_ids("empty.txt")
