"""The datasets the stages run on, by name (`voc12`, `coco14`): everything that differs between
benchmarks, so that class counts and files flow from one place.

An entry (`DatasetEntry`) gives the class names and counts, the image lists (domain → ids), a folder
object (`entry.open(data_dir)`: image path and image, image-level label, ground-truth mask path
and mask, the up-front file checks), the reader of label PNGs checked against the class count,
and the colour palette. `voc12` wraps wsss.data.voc unchanged; `coco14` is wsss.data.coco.

Palette: both use the PASCAL VOC colour map, whose bit-interleaved definition gives all 256 class
ids distinct colours; COCO's classes 0..20 therefore look as in VOC, 21..80 continue the same map,
and 255 keeps VOC's light void colour.
"""
from dataclasses import dataclass
from typing import Callable

from wsss.data import coco, voc

__all__ = ["DatasetEntry", "DATASETS", "get_dataset"]


@dataclass(frozen=True)
class DatasetEntry:
    """One benchmark. `num_classes` counts the foreground classes (the label vector's length)."""

    name: str
    title: str
    num_classes: int
    default_data_dir: str
    domains: tuple                                 # the named image lists
    class_names: Callable[[], tuple]               # foreground names, class id 1 first
    image_ids: Callable[[str, object], list]       # (domain, data_dir) → ids
    open: Callable[[object], object]               # data_dir → folder (voc.VOCData's interface)
    load_mask: Callable[[object], object]          # a mask or label PNG, values checked
    palette: Callable[[], list]                    # flat 768-value RGB list for PIL

    @property
    def num_classes_with_background(self):
        return self.num_classes + 1


def _voc_class_names():
    """Read at call time: a `./data/VOC_2012.json` in the working directory takes precedence."""
    return tuple(voc.load_class_info()["class_names"])


def _coco_image_ids(domain, data_dir):
    return coco.COCOData(data_dir).image_ids(domain)


DATASETS = {
    "voc12": DatasetEntry(
        name="voc12", title="PASCAL VOC 2012", num_classes=voc.NUM_CLASSES,
        default_data_dir="../VOCtrainval_11-May-2012/", domains=("train", "train_aug", "val", "test"),
        class_names=_voc_class_names, image_ids=voc.read_image_ids, open=voc.VOCData, load_mask=voc.load_mask,
        palette=voc.voc_palette),
    "coco14": DatasetEntry(
        name="coco14", title="MS COCO 2014", num_classes=coco.NUM_CLASSES,
        default_data_dir="../coco2014/", domains=tuple(coco.DOMAIN_SPLITS),
        class_names=lambda: coco.CLASS_NAMES, image_ids=_coco_image_ids, open=coco.COCOData, load_mask=coco.load_mask,
        palette=voc.voc_palette),
}


def get_dataset(name):
    """The entry called `name`; an unknown name is refused with the list of valid ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset '{name}'; valid datasets: {', '.join(DATASETS)}") from None
