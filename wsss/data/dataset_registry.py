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
from typing import Callable, Optional

from wsss.data import coco, voc
from wsss.utils.labels import check_class_ids

__all__ = ["DatasetEntry", "DATASETS", "DEFAULT_DATASET", "get_dataset", "add_dataset_argument"]


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
    ground_truth: Callable[[object], tuple]        # evaluate.py's --gt_dir → (root, image id → mask path)
    mask_script: Optional[str] = None              # renders the ground-truth masks once (COCO); None: shipped
    mask_script_done: Optional[Callable[[object], bool]] = None  # data_dir → nothing left for mask_script
    image_folder: Optional[str] = None             # the one folder of every image (VOC's JPEGImages); None: per split

    @property
    def num_classes_with_background(self):
        return self.num_classes + 1

    def check_class_ids(self, label, path, void=True):
        """`label` if its values are this dataset's class ids (and 255 when `void`), else one error line."""
        return check_class_ids(label, path, self.num_classes, void)


def _voc_class_names():
    """Read at call time: a `./data/VOC_2012.json` in the working directory takes precedence."""
    return tuple(voc.load_class_info()["class_names"])


def _coco_class_names():
    return coco.CLASS_NAMES


def _coco_image_ids(domain, data_dir):
    return coco.COCOData(data_dir).image_ids(domain)


DATASETS = {
    "voc12": DatasetEntry(
        name="voc12", title="PASCAL VOC 2012", num_classes=voc.NUM_CLASSES,
        default_data_dir="../VOCtrainval_11-May-2012/", domains=("train", "train_aug", "val", "test"),
        class_names=_voc_class_names, image_ids=voc.read_image_ids, open=voc.VOCData, load_mask=voc.load_mask,
        palette=voc.voc_palette, ground_truth=voc.ground_truth, image_folder=voc.IMAGE_FOLDER),
    "coco14": DatasetEntry(
        name="coco14", title="MS COCO 2014", num_classes=coco.NUM_CLASSES,
        default_data_dir="../coco2014/", domains=tuple(coco.DOMAIN_SPLITS),
        class_names=_coco_class_names, image_ids=_coco_image_ids, open=coco.COCOData, load_mask=coco.load_mask,
        palette=voc.voc_palette, ground_truth=coco.ground_truth, mask_script="make_coco_masks.py",
        mask_script_done=coco.ground_truth_ready),
}


DEFAULT_DATASET = "voc12"


def add_dataset_argument(parser):
    """--dataset of every stage script (default voc12: the published command lines are unchanged)."""
    parser.add_argument("--dataset", type=str, default=DEFAULT_DATASET, choices=sorted(DATASETS),
                        help="benchmark of --data_dir: voc12 (PASCAL VOC 2012 + SBD) or coco14 (MS COCO 2014); "
                             "it sets the class count and names, the lists, labels and ground truth")


def get_dataset(name):
    """The entry called `name`; an unknown name is refused with the list of valid ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset '{name}'; valid datasets: {', '.join(DATASETS)}") from None
