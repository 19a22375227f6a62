import time
import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest
from PIL import Image

from wsss.data import toy_voc, voc
from wsss.utils import files

SMALL = dict(num_train=3, num_train_aug=6, num_val=3, num_test=2, min_size=64, max_size=97, show_progress=False)
CLASS_INFO = files.read_json(toy_voc.CLASS_INFO_PATH)
CLASS_NAMES = CLASS_INFO["class_names"]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return toy_voc.generate(tmp_path_factory.mktemp("toy") / "voc", seed=3, **SMALL)


def read_list(root, domain):
    return (root / "ImageSets" / "Segmentation" / f"{domain}.txt").read_text().split()


def read_objects(path):
    root = ElementTree.parse(path).getroot()
    size = tuple(int(root.find(f"size/{key}").text) for key in ("width", "height"))
    objects = [(o.find("name").text, tuple(int(o.find(f"bndbox/{k}").text) for k in ("xmin", "ymin", "xmax", "ymax")))
               for o in root.findall("object")]
    return size, objects


def file_bytes(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_lists_nest_like_voc_and_test_has_images_only(small):
    lists = {domain: read_list(small, domain) for domain in ("train", "train_aug", "val", "test")}
    assert [len(lists[d]) for d in ("train", "train_aug", "val", "test")] == [3, 6, 3, 2]
    assert lists["train"] == lists["train_aug"][:3]
    assert not set(lists["train_aug"]) & set(lists["val"])
    assert not set(lists["test"]) & (set(lists["train_aug"]) | set(lists["val"]))
    for image_id in lists["train_aug"] + lists["val"]:
        for folder, suffix in (("JPEGImages", "jpg"), ("Annotations", "xml"), ("SegmentationClass", "png")):
            assert (small / folder / f"{image_id}.{suffix}").is_file()
    for image_id in lists["test"]:
        assert (small / "JPEGImages" / f"{image_id}.jpg").is_file()
        assert not (small / "Annotations" / f"{image_id}.xml").exists()
        assert not (small / "SegmentationClass" / f"{image_id}.png").exists()
    assert (voc.read_image_ids("train_aug", small) == lists["train_aug"])


def test_masks_and_annotations_agree(small):
    palette = voc.voc_palette()
    for index, name in enumerate(["background"] + CLASS_NAMES):
        assert palette[3 * index:3 * index + 3] == CLASS_INFO["color_dict"][name]
    for image_id in read_list(small, "train_aug") + read_list(small, "val"):
        with Image.open(small / "SegmentationClass" / f"{image_id}.png") as png:
            assert png.mode == "P"
            assert png.getpalette()[3 * 255:3 * 256] == [224, 224, 192]
            mask = np.array(png)
        with Image.open(small / "JPEGImages" / f"{image_id}.jpg") as jpeg:
            assert jpeg.mode == "RGB" and jpeg.size == mask.shape[::-1]
        (width, height), objects = read_objects(small / "Annotations" / f"{image_id}.xml")
        assert (height, width) == mask.shape
        assert set(np.unique(mask)) <= set(range(21)) | {255}
        present = {CLASS_NAMES[v - 1] for v in np.unique(mask) if 0 < v < 255}
        assert {name for name, _ in objects} == present
        assert sorted(voc.parse_tags(small / "Annotations" / f"{image_id}.xml", CLASS_INFO["class_dic"])) == \
            sorted(name for name, _ in objects)
        for name in present:
            covered = np.zeros_like(mask, dtype=bool)
            for _, (xmin, ymin, xmax, ymax) in (o for o in objects if o[0] == name):
                assert 1 <= xmin < xmax <= width and 1 <= ymin < ymax <= height
                covered[ymin - 1:ymax, xmin - 1:xmax] = True
            assert not np.any((mask == CLASS_NAMES.index(name) + 1) & ~covered)


def test_void_band_separates_every_region(small):
    for image_id in read_list(small, "train_aug"):
        mask = np.array(Image.open(small / "SegmentationClass" / f"{image_id}.png"))
        assert (mask == 255).any()
        for a, b in ((mask[:, 1:], mask[:, :-1]), (mask[1:], mask[:-1])):
            labelled = (a != 255) & (b != 255)
            assert np.all(a[labelled] == b[labelled]), "different labels touch without void between them"
        foreground = (mask > 0) & (mask < 255)
        near_void = np.zeros_like(foreground)
        near_void[1:-1, 1:-1] = (mask[:-2, 1:-1] == 255) | (mask[2:, 1:-1] == 255) | (mask[1:-1, :-2] == 255)
        assert (near_void & foreground).any() and (foreground & ~near_void).any()


def test_deterministic_and_independent_of_counts(tmp_path):
    first = toy_voc.generate(tmp_path / "a", seed=3, **SMALL)
    second = toy_voc.generate(tmp_path / "b", seed=3, **SMALL)
    assert file_bytes(first) == file_bytes(second)
    fewer = toy_voc.generate(tmp_path / "c", seed=3, **dict(SMALL, num_test=1))
    assert (fewer / "JPEGImages" / "toy_000010.jpg").read_bytes() == (first / "JPEGImages" / "toy_000010.jpg").read_bytes()
    other_seed = toy_voc.generate(tmp_path / "d", seed=4, **SMALL)
    assert (other_seed / "JPEGImages" / "toy_000001.jpg").read_bytes() != (first / "JPEGImages" / "toy_000001.jpg").read_bytes()


def test_skips_a_complete_dataset_and_regenerates_cleanly(tmp_path):
    root = toy_voc.generate(tmp_path / "voc", **SMALL)
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    started = time.perf_counter()
    assert toy_voc.generate(root, **SMALL) == root
    assert time.perf_counter() - started < 0.5
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} == stamps

    smaller = dict(SMALL, num_train_aug=4, num_val=1, num_test=1)
    toy_voc.generate(root, **smaller)
    expected = file_bytes(toy_voc.generate(tmp_path / "fresh", **smaller))
    assert file_bytes(root) == expected
    assert not list(root.rglob(".*"))


def test_all_classes_balanced_with_several_objects(tmp_path):
    root = toy_voc.generate(tmp_path / "voc", num_train=10, num_train_aug=30, num_val=10, num_test=0,
                            min_size=64, max_size=96, show_progress=False)
    counts = dict.fromkeys(CLASS_NAMES, 0)
    objects_per_image = []
    for image_id in read_list(root, "train_aug") + read_list(root, "val"):
        _, objects = read_objects(root / "Annotations" / f"{image_id}.xml")
        objects_per_image.append(len(objects))
        for name, _ in objects:
            counts[name] += 1
    assert min(counts.values()) >= 2
    assert set(objects_per_image) == {1, 2, 3}
    assert files.read_json(root / toy_voc.MANIFEST_NAME)["instances_train_aug_val"] == counts


def test_cli_and_argument_checks(tmp_path):
    root = toy_voc.main(["--out_dir", str(tmp_path / "voc"), "--num_train", "1", "--num_train_aug", "2",
                         "--num_val", "1", "--num_test", "0", "--show_progress", "False"])
    assert read_list(root, "train_aug") == ["toy_000001", "toy_000002"]
    assert read_list(root, "test") == []
    with pytest.raises(ValueError):
        toy_voc.generate(tmp_path / "bad", num_train=5, num_train_aug=4)
