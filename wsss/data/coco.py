"""MS COCO 2014 as weakly supervised segmentation uses it: class metadata, image names and lists,
image-level labels and semantic ground-truth masks from the instance annotations.

Folder (`--data_dir`), the official archives unpacked side by side:

    train2014/COCO_train2014_000000000009.jpg   82,783 training images
    val2014/COCO_val2014_000000000042.jpg       40,504 evaluation images
    annotations/instances_{train,val}2014.json
    mask/{train2014,val2014}/{image id}.png     class-id masks, written once by make_coco_masks.py
    mask/{train2014,val2014}.labels.npz         the split's ids and labels (label index), written with them

An image id is the image's file name without extension (`COCO_train2014_000000000009`), as the
IRN-derived COCO code names its per-image outputs; the split is part of the id. The lists `train`
(also `train_aug` and `train2014`) and `val` (`val2014`) are every image of that split's JSON, in
ascending COCO image id (the order of torchvision's CocoDetection).

The convention below is that of the IRN-derived COCO code (ReCAM's `mscoco/annToMask.py` renders the
masks; ReCAM's and CLIMS' `mscoco/dataloader.py` read the labels):
- classes: the 80 categories in ascending category id, numbered 1..80 (category ids have gaps:
  1..90); 0 is background, 81 classes in all;
- image-level label: the categories of all the image's annotations, crowd ones included
  (CocoDetection's targets), as an 80-vector;
- mask: all background, then each non-crowd annotation painted with its class in the order of the
  annotation file, so a later instance covers an earlier one where they overlap; crowd regions
  stay background (not 255), so they are scored as background; an image without annotations is
  all background; an 8-bit grayscale PNG, no void pixels.
One deviation: ReCAM names a mask `{integer image id}.png`; here it is `{image id}.png`
(`mask/train2014/COCO_train2014_000000000009.png`), so that the ground truth, the images and every
stage's outputs of an image share one file stem. Masks rendered by ReCAM's script hold the same
values and only need renaming.

The label index spares the other stages the annotation file: parsed, the 450 MB train2014 JSON
takes about 15 s and 3 GB in every process that lists or labels its images. The index holds the
ids in list order, the labels (uint8, images × 80) and the size and modification time of the
annotation file it was made from; when the file has changed since (or there is no index) the
stages read the annotation file instead and say so in one line.

Instance shapes are decoded by pycocotools: polygons (one annotation may have several parts,
merged), uncompressed RLE (crowd) and compressed RLE. A polygon of fewer than three points covers
no pixel and is skipped (pycocotools would take a four-number polygon for a box).
"""
import functools
import json
import logging
import pathlib
import re
import zipfile

import numpy as np
from pycocotools import mask as mask_utils

from wsss.data.voc import PUBLISHED_LIST_FOLDER, load_image, parse_image_list, require_files
from wsss.utils.errors import StageError
from wsss.utils.files import atomic_path, load_label_png
from wsss.utils.labels import check_class_ids

__all__ = ["CATEGORIES", "CLASS_NAMES", "NUM_CLASSES", "CATEGORY_TO_CLASS", "SPLITS", "DOMAIN_SPLITS",
           "ImageRecord", "image_name", "parse_image_name", "index_instances", "image_label", "instance_rle",
           "render_mask", "encode_instance", "read_instances", "clear_instances", "require_annotation_file",
           "check_data_dir", "SplitLabels", "label_index_path", "save_label_index", "read_label_index",
           "ground_truth_ready", "COCOData",
           "ground_truth", "load_mask"]

LOG = logging.getLogger(__name__)
LABEL_INDEX_FORMAT = 1  # raised whenever what the index holds or how labels are derived changes

# (category id, name) of the 80 COCO categories, in category-id order: class id = position + 1
CATEGORIES = (
    (1, "person"), (2, "bicycle"), (3, "car"), (4, "motorcycle"), (5, "airplane"), (6, "bus"), (7, "train"),
    (8, "truck"), (9, "boat"), (10, "traffic light"), (11, "fire hydrant"), (13, "stop sign"),
    (14, "parking meter"), (15, "bench"), (16, "bird"), (17, "cat"), (18, "dog"), (19, "horse"), (20, "sheep"),
    (21, "cow"), (22, "elephant"), (23, "bear"), (24, "zebra"), (25, "giraffe"), (27, "backpack"),
    (28, "umbrella"), (31, "handbag"), (32, "tie"), (33, "suitcase"), (34, "frisbee"), (35, "skis"),
    (36, "snowboard"), (37, "sports ball"), (38, "kite"), (39, "baseball bat"), (40, "baseball glove"),
    (41, "skateboard"), (42, "surfboard"), (43, "tennis racket"), (44, "bottle"), (46, "wine glass"),
    (47, "cup"), (48, "fork"), (49, "knife"), (50, "spoon"), (51, "bowl"), (52, "banana"), (53, "apple"),
    (54, "sandwich"), (55, "orange"), (56, "broccoli"), (57, "carrot"), (58, "hot dog"), (59, "pizza"),
    (60, "donut"), (61, "cake"), (62, "chair"), (63, "couch"), (64, "potted plant"), (65, "bed"),
    (67, "dining table"), (70, "toilet"), (72, "tv"), (73, "laptop"), (74, "mouse"), (75, "remote"),
    (76, "keyboard"), (77, "cell phone"), (78, "microwave"), (79, "oven"), (80, "toaster"), (81, "sink"),
    (82, "refrigerator"), (84, "book"), (85, "clock"), (86, "vase"), (87, "scissors"), (88, "teddy bear"),
    (89, "hair drier"), (90, "toothbrush"),
)
CLASS_NAMES = tuple(name for _, name in CATEGORIES)
NUM_CLASSES = len(CATEGORIES)  # foreground classes; with background 81
CATEGORY_TO_CLASS = {category: index + 1 for index, (category, _) in enumerate(CATEGORIES)}

SPLITS = ("train2014", "val2014")
DOMAIN_SPLITS = {"train": "train2014", "train_aug": "train2014", "train2014": "train2014",
                 "val": "val2014", "val2014": "val2014"}
NAME_PATTERN = re.compile(r"COCO_(train2014|val2014)_(\d{12})")
MIN_POLYGON_NUMBERS = 6  # three points


# ---- pure functions: names, the annotation index, labels and masks (ValueError on bad input)

def image_name(split, number):
    """`COCO_train2014_000000000009` for image 9 of train2014."""
    return f"COCO_{split}_{number:012d}"


def parse_image_name(name):
    """(split, COCO image id) of an image id such as `COCO_val2014_000000000042`."""
    match = NAME_PATTERN.fullmatch(name)
    if match is None:
        raise ValueError(f"'{name}' is not a COCO 2014 image id (COCO_train2014_<12 digits> or "
                         "COCO_val2014_<12 digits>)")
    return match.group(1), int(match.group(2))


class ImageRecord:
    """One image of an annotation file: its id (`name`), COCO image id, size and annotations in file order."""

    __slots__ = ("name", "number", "height", "width", "annotations")

    def __init__(self, name, number, height, width):
        self.name, self.number, self.height, self.width = name, number, height, width
        self.annotations = []


def index_instances(instances, split):
    """{image id: ImageRecord} of a parsed `instances_{split}.json`, in ascending COCO image id.

    Checks what the labels and masks rely on: every image's file name is its split's
    `COCO_{split}_<12-digit id>.jpg` with positive height and width; every annotation names a
    listed image and one of the 80 categories, and its segmentation has a decodable form."""
    if not isinstance(instances, dict) or not isinstance(instances.get("images"), list) \
            or not isinstance(instances.get("annotations"), list):
        raise ValueError("not a COCO instances file: it needs the lists 'images' and 'annotations'")
    by_number = {}
    for image in instances["images"]:
        try:
            number, height, width, file_name = image["id"], image["height"], image["width"], image["file_name"]
        except (KeyError, TypeError):
            raise ValueError(f"image entry {str(image)[:80]} lacks id, height, width or file_name")
        valid_number = isinstance(number, int) and not isinstance(number, bool) and number >= 0
        if not valid_number or pathlib.PurePosixPath(str(file_name)).stem != image_name(split, number):
            raise ValueError(f"image {number!r}: file name '{file_name}' is not COCO_{split}_<12-digit image id>.jpg; "
                             f"is this instances_{split}.json?")
        if not (isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0):
            raise ValueError(f"image {number}: height and width must be positive integers, got {height!r}, {width!r}")
        if number in by_number:
            raise ValueError(f"image {number} is listed twice")
        by_number[number] = ImageRecord(image_name(split, number), number, height, width)
    for annotation in instances["annotations"]:
        try:
            number, category, segmentation = (annotation["image_id"], annotation["category_id"],
                                              annotation["segmentation"])
        except (KeyError, TypeError):
            raise ValueError(f"annotation {str(annotation)[:80]} lacks image_id, category_id or segmentation")
        record = by_number.get(number)
        if record is None:
            raise ValueError(f"annotation {annotation.get('id')}: image {number!r} is not in 'images'")
        if category not in CATEGORY_TO_CLASS:
            raise ValueError(f"annotation {annotation.get('id')}: category {category!r} is none of the 80 COCO "
                             "categories")
        _check_segmentation(segmentation, record, annotation.get("id"))
        record.annotations.append(annotation)
    return {by_number[number].name: by_number[number] for number in sorted(by_number)}


def _check_segmentation(segmentation, record, annotation_id):
    where = f"annotation {annotation_id} (image {record.number})"
    if isinstance(segmentation, list):
        reach = 2 * (record.height + record.width)
        for polygon in segmentation:
            try:  # pycocotools takes NaN or far-off points and exhausts the memory
                coordinates = np.asarray(polygon, dtype=np.float64)
                valid = coordinates.ndim == 1 and coordinates.size % 2 == 0 and bool(
                    np.all(np.abs(coordinates) <= reach))
            except (TypeError, ValueError):
                valid = False
            if not valid:
                raise ValueError(f"{where}: a polygon must be a list of x, y numbers near the image, got "
                                 f"{str(polygon)[:60]}")
        return
    if not isinstance(segmentation, dict) or "counts" not in segmentation or "size" not in segmentation:
        raise ValueError(f"{where}: segmentation is neither polygons nor an RLE with counts and size")
    if segmentation["size"] != [record.height, record.width]:
        raise ValueError(f"{where}: RLE size {segmentation['size']} is not the image's "
                         f"[{record.height}, {record.width}]")
    counts = segmentation["counts"]
    if isinstance(counts, list):
        if not all(isinstance(c, int) and c >= 0 for c in counts) or sum(counts) != record.height * record.width:
            raise ValueError(f"{where}: uncompressed RLE counts must be non-negative integers summing to "
                             f"height × width = {record.height * record.width}")
    elif not isinstance(counts, str):
        raise ValueError(f"{where}: RLE counts must be a list of run lengths or a compressed string")


def image_label(record):
    """The image-level label: float32 80-vector, 1 for the class of every annotation, crowd ones included."""
    label = np.zeros(NUM_CLASSES, dtype=np.float32)
    for annotation in record.annotations:
        label[CATEGORY_TO_CLASS[annotation["category_id"]] - 1] = 1.0
    return label


def instance_rle(segmentation, height, width):
    """The compressed RLE of one annotation's segmentation, or None when it covers nothing (no
    polygon of three points or more). Polygons are merged into one mask, as pycocotools' annToMask does."""
    if isinstance(segmentation, list):
        polygons = [polygon for polygon in segmentation if len(polygon) >= MIN_POLYGON_NUMBERS]
        if not polygons:
            return None
        return mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    if isinstance(segmentation["counts"], list):
        return mask_utils.frPyObjects(segmentation, height, width)
    return {"size": list(segmentation["size"]), "counts": segmentation["counts"].encode("ascii")}


def render_mask(record):
    """The semantic mask of an image (uint8 height × width): 0 background, each non-crowd annotation
    painted with its class id 1..80 in file order (a later one covers an earlier one); crowd regions
    stay background."""
    mask = np.zeros((record.height, record.width), dtype=np.uint8)
    for annotation in record.annotations:
        if annotation.get("iscrowd", 0):
            continue
        try:
            rle = instance_rle(annotation["segmentation"], record.height, record.width)
            if rle is None:
                continue
            instance = mask_utils.decode(rle)
        except (TypeError, ValueError) as error:
            raise ValueError(f"annotation {annotation.get('id')} (image {record.number}): undecodable "
                             f"segmentation ({error})")
        if instance.shape != mask.shape or instance.max(initial=0) > 1:
            raise ValueError(f"annotation {annotation.get('id')} (image {record.number}): corrupt RLE")
        mask[instance == 1] = CATEGORY_TO_CLASS[annotation["category_id"]]
    return mask


def encode_instance(instance_mask):
    """A boolean height × width mask as a JSON-ready compressed RLE (`size`, `counts` text)."""
    rle = mask_utils.encode(np.asfortranarray(np.asarray(instance_mask, dtype=np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


# ---- the dataset folder (StageError on bad input)

def read_instances(path, split):
    """The index (index_instances) of an annotation file, read once per process while the file is
    unchanged: workers forked later share it instead of reading the file again."""
    path = require_annotation_file(path)
    status = path.stat()
    return _read_instances(path, split, status.st_mtime_ns, status.st_size)


@functools.lru_cache(maxsize=2)
def _read_instances(path, split, modified, size):
    try:
        with open(path, "rb") as stream:
            instances = json.load(stream)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise StageError(f"{path}: not valid JSON ({error}); download and unpack it again")
    try:
        return index_instances(instances, split)
    except ValueError as error:
        raise StageError(f"{path}: {error}")


def clear_instances():
    """Forget the annotation files and label indexes read so far (their memory is freed)."""
    _read_instances.cache_clear()
    _split_labels.cache_clear()


class SplitLabels:
    """The ids of a split in list order (ascending COCO image id) and their labels (uint8, N × 80)."""

    def __init__(self, ids, labels):
        self.ids, self.labels = list(ids), labels
        self.rows = {image_id: row for row, image_id in enumerate(self.ids)}

    @classmethod
    def from_records(cls, records):
        labels = np.zeros((len(records), NUM_CLASSES), dtype=np.uint8)
        for row, record in enumerate(records.values()):
            labels[row] = image_label(record)
        return cls(records, labels)

    def label(self, image_id):
        """The float32 80-vector of image_label, or None for an id not in the split."""
        row = self.rows.get(image_id)
        return None if row is None else self.labels[row].astype(np.float32)


def label_index_path(mask_dir, split):
    return pathlib.Path(mask_dir) / f"{split}.labels.npz"


def save_label_index(path, split_labels, annotation_path):
    """Write a split's label index (atomically): ids, labels, and the annotation file's stamp."""
    with atomic_path(path) as temporary, open(temporary, "wb") as stream:
        np.savez(stream, format=np.int64(LABEL_INDEX_FORMAT), ids=np.array(split_labels.ids, dtype=str),
                 labels=split_labels.labels,
                 annotation_stamp=np.array(_file_stamp(annotation_path), dtype=np.int64))


def read_label_index(path, annotation_path):
    """The SplitLabels of a label index, or None when there is none, it was made from another version
    of the annotation file or it is of another format. A damaged index is one StageError."""
    path = pathlib.Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as arrays:
            if "format" not in arrays or int(arrays["format"]) != LABEL_INDEX_FORMAT:
                return None
            ids, labels, stamp = arrays["ids"], arrays["labels"], arrays["annotation_stamp"]
    except (OSError, ValueError, TypeError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise StageError(f"{path}: damaged label index ({error}); delete it or run make_coco_masks.py again")
    if ids.ndim != 1 or ids.dtype.kind != "U" or labels.dtype != np.uint8 or labels.shape != (len(ids), NUM_CLASSES) \
            or stamp.shape != (2,):
        raise StageError(f"{path}: damaged label index (unexpected arrays); delete it or run make_coco_masks.py again")
    if tuple(stamp.tolist()) != _file_stamp(annotation_path):
        return None
    return SplitLabels(ids.tolist(), labels)


@functools.lru_cache(maxsize=2)
def _split_labels(index_path, annotation_path, split, stamps):
    split_labels = read_label_index(index_path, annotation_path)
    if split_labels is None:
        LOG.warning(f"note: {index_path} is missing or out of date; reading {annotation_path} instead (about 15 s "
                    "and 3 GB per process for train2014; make_coco_masks.py writes the index)")
        split_labels = SplitLabels.from_records(read_instances(annotation_path, split))
    return split_labels


def ground_truth_ready(data_dir):
    """Whether make_coco_masks.py has nothing left to do in `data_dir`: each split has an up-to-date
    label index and every image of it has its mask."""
    data = COCOData(data_dir)
    for split in SPLITS:
        annotation_path = data.annotation_path(split)
        if not annotation_path.is_file():
            return False
        try:
            split_labels = read_label_index(label_index_path(data.root / "mask", split), annotation_path)
        except StageError:  # damaged: make_coco_masks.py writes it again
            return False
        if split_labels is None or not all(data.mask_path(image_id).is_file() for image_id in split_labels.ids):
            return False
    return True


def _file_stamp(path):
    """(size, mtime in ns) of a file, or None when it is missing: a cache key that changes with the file."""
    try:
        status = pathlib.Path(path).stat()
    except FileNotFoundError:
        return None
    return status.st_size, status.st_mtime_ns


def require_annotation_file(path):
    path = pathlib.Path(path)
    if not path.is_file():
        raise StageError(f"{path}: annotation file not found; unpack annotations_trainval2014.zip into "
                         "--data_dir (annotations/instances_train2014.json, instances_val2014.json)")
    return path


def check_data_dir(data_dir):
    path = pathlib.Path(data_dir)
    if not path.is_dir():
        raise StageError(f"{path}: data_dir not found; pass --data_dir pointing at the COCO 2014 folder "
                         "(train2014/, val2014/, annotations/)")
    if not (path / "annotations").is_dir():
        raise StageError(f"{path}: no annotations/ folder; is --data_dir the COCO 2014 folder "
                         "(train2014/, val2014/, annotations/instances_{train,val}2014.json)?")
    return path


class COCOData:
    """Paths, lists, labels and masks of an MS COCO 2014 folder (the interface of voc.VOCData)."""

    def __init__(self, data_dir):
        self.root = check_data_dir(data_dir)
        self._split_labels = {}

    def annotation_path(self, split):
        return self.root / "annotations" / f"instances_{split}.json"

    def records(self, split):
        """{image id: ImageRecord} of a split, from its annotation file."""
        return read_instances(self.annotation_path(split), split)

    def split_labels(self, split):
        """SplitLabels of a split: from its label index (mask/{split}.labels.npz) when it matches the
        annotation file, else from the annotation file. Read once per process while both are unchanged,
        and looked up once per split by this object (a dataset asks for every image's label)."""
        if split not in self._split_labels:
            annotation_path = require_annotation_file(self.annotation_path(split))
            index_path = label_index_path(self.root / "mask", split)
            self._split_labels[split] = _split_labels(index_path, annotation_path, split,
                                                      (_file_stamp(index_path), _file_stamp(annotation_path)))
        return self._split_labels[split]

    def record(self, image_id):
        split, _ = _parse_id(image_id)
        record = self.records(split).get(image_id)
        if record is None:
            raise self._not_annotated(split, image_id)
        return record

    def image_ids(self, domain):
        """The ids of a list: `train`/`train_aug`/`train2014` or `val`/`val2014` (every image of the
        split), a list file `{data_dir}/ImageSets/{domain}.txt`, or the path of a `.txt` list of ids.
        A path into the published code's `voc12/` folder that does not exist (`voc12/train_aug.txt`,
        a default of CPN's scripts) is read as its name (`train_aug`), as for VOC."""
        given = pathlib.Path(domain)
        if given.suffix == ".txt" and given.parent.name == PUBLISHED_LIST_FOLDER and not given.is_file():
            domain = given.stem
        if domain in DOMAIN_SPLITS:
            return list(self.split_labels(DOMAIN_SPLITS[domain]).ids)
        path = pathlib.Path(domain) if domain.endswith(".txt") else self.root / "ImageSets" / f"{domain}.txt"
        if not path.is_file():
            raise StageError(f"image list '{domain}' not found ({path}); COCO lists are "
                             f"{', '.join(DOMAIN_SPLITS)} or a .txt file of image ids")
        ids = parse_image_list(path.read_text())
        if not ids:
            raise StageError(f"{path}: image list is empty")
        for image_id in ids:
            _parse_id(image_id, where=path)
        return ids

    def image_path(self, image_id):
        split, _ = _parse_id(image_id)
        return self.root / split / f"{image_id}.jpg"

    def mask_path(self, image_id):
        split, _ = _parse_id(image_id)
        return self.root / "mask" / split / f"{image_id}.png"

    def image(self, image_id):
        return load_image(self.image_path(image_id))

    def mask(self, image_id):
        return load_mask(self.mask_path(image_id))

    def label(self, image_id):
        split, _ = _parse_id(image_id)
        label = self.split_labels(split).label(image_id)
        if label is None:
            raise self._not_annotated(split, image_id)
        return label

    def _not_annotated(self, split, image_id):
        return StageError(f"{self.annotation_path(split)}: image {image_id} is not in the annotations; "
                          "check the image list")

    def check_images(self, ids, domain):
        require_files((self.image_path(image_id) for image_id in ids), "image",
                      f"ids of the '{domain}' list need {{split}}/{{id}}.jpg; check --data_dir or the list")

    def check_masks(self, ids, domain):
        require_files((self.mask_path(image_id) for image_id in ids), "ground-truth mask",
                      f"ids of the '{domain}' list need mask/{{split}}/{{id}}.png; run make_coco_masks.py first")


def ground_truth(path):
    """(dataset root, image id → mask path) of evaluate.py's --data_dir: the COCO folder, whose
    mask/{split}/ make_coco_masks.py has written."""
    data = COCOData(path)
    if not (data.root / "mask").is_dir():
        raise StageError(f"{data.root / 'mask'}: ground-truth masks not found; run make_coco_masks.py "
                         f"--data_dir {data.root} first")
    return data.root, data.mask_path


def _parse_id(image_id, where=None):
    try:
        return parse_image_name(image_id)
    except ValueError as error:
        raise StageError(f"{where}: {error}" if where else str(error))


def load_mask(path):
    """A COCO mask or label PNG (class ids 0..80, 255 void) as a uint8 array."""
    return check_class_ids(load_label_png(path), path, NUM_CLASSES)
