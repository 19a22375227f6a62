"""PASCAL VOC data: class metadata, image lists, XML tags, images and masks, and the datasets.

Lists and class metadata are looked up as docs/design.md §2 says (first match wins):
`{data_dir}/ImageSets/Segmentation/{domain}.txt`, `./data/{domain}.txt`, the repository's `data/`.
"""
import functools
import json
import pathlib
import xml.etree.ElementTree as ElementTree

import numpy as np
from PIL import Image

from wsss.utils.errors import StageError
from wsss.utils.files import load_label_png
from wsss.utils.labels import check_class_ids

REPOSITORY_DATA = pathlib.Path(__file__).resolve().parents[2] / "data"
NUM_CLASSES = 20
IMAGE_FOLDER = "JPEGImages"  # every image of the dataset, {id}.jpg


def check_data_dir(data_dir):
    path = pathlib.Path(data_dir)
    if not path.is_dir():
        raise StageError(f"{path}: data_dir not found; pass --data_dir pointing at VOC2012 "
                         "(JPEGImages/, Annotations/, SegmentationClass/) or the toy dataset")
    if not (path / IMAGE_FOLDER).is_dir():
        raise StageError(f"{path}: no JPEGImages/ folder; is --data_dir the VOC2012 folder?")
    return path


PUBLISHED_LIST_FOLDER = "voc12"  # the folder of image lists in the published SEAM/CPN code
IMAGE_SUFFIXES = (".jpg", ".png")


def list_path(domain, data_dir=None):
    """The list file of `domain`: a list name, looked up as the module docstring says, or the path of
    a `.txt` list file. A path into the published code's `voc12/` folder that does not exist here
    (`voc12/train_aug.txt`, a default of CPN's scripts) is looked up by its name (`train_aug`)."""
    given = pathlib.Path(domain)
    if given.suffix == ".txt":
        if given.is_file():
            return given
        if given.parent.name != PUBLISHED_LIST_FOLDER:
            raise StageError(f"{given}: image list file not found; check the list path")
        domain = given.stem
    candidates = []
    if data_dir is not None:
        candidates.append(pathlib.Path(data_dir) / "ImageSets" / "Segmentation" / f"{domain}.txt")
    candidates += [pathlib.Path("data") / f"{domain}.txt", REPOSITORY_DATA / f"{domain}.txt"]
    for path in candidates:
        if path.is_file():
            return path
    raise StageError(f"image list '{domain}' not found (looked in {', '.join(map(str, candidates))}); "
                     "check --domain")


def parse_image_list(text):
    """Image ids of a list file's text, in order; CRLF stripped, empty lines skipped. A line is an id
    (VOC's lists) or SEAM's pair `/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png`, whose id is
    the first file's name without folder and extension."""
    ids = []
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        first = fields[0]
        ids.append(pathlib.PurePosixPath(first).stem if "/" in first or first.endswith(IMAGE_SUFFIXES) else first)
    return ids


def read_image_ids(domain, data_dir=None):
    """Image ids of a list (a name or a list file, see list_path; lines as parse_image_list reads them)."""
    path = list_path(domain, data_dir)
    ids = parse_image_list(path.read_text())
    if not ids:
        raise StageError(f"{path}: image list is empty")
    return ids


def load_class_info():
    """The VOC class metadata (`class_names`, `class_dic`, `classes`, `color_dict`)."""
    local = pathlib.Path("data") / "VOC_2012.json"
    path = local if local.is_file() else REPOSITORY_DATA / "VOC_2012.json"
    return json.loads(path.read_text())


def voc_palette():
    """The 256-entry VOC colour map (bit-interleaved class ids), flat RGB list for PIL."""
    palette = []
    for index in range(256):
        r = g = b = 0
        code = index
        for shift in range(7, -1, -1):
            r |= ((code >> 0) & 1) << shift
            g |= ((code >> 1) & 1) << shift
            b |= ((code >> 2) & 1) << shift
            code >>= 3
        palette += [r, g, b]
    return palette


def parse_tags(xml_path, class_dic):
    """Class names of the objects of a VOC annotation, skipping degenerate boxes (docs/design.md §2).

    Coordinates are the integer part of the text, clipped to [0, size-1]; an object whose clipped
    box has zero width or height is skipped, as published.
    """
    xml_path = pathlib.Path(xml_path)
    if not xml_path.is_file():
        raise StageError(f"{xml_path}: annotation not found; every listed image needs Annotations/{{id}}.xml")
    try:
        root = ElementTree.parse(xml_path).getroot()
        width = int(root.find("size/width").text)
        height = int(root.find("size/height").text)
        names = []
        for obj in root.findall("object"):
            name = obj.find("name").text.strip()
            box = obj.find("bndbox")
            xmin, xmax = (_clipped(box.find(key).text, width) for key in ("xmin", "xmax"))
            ymin, ymax = (_clipped(box.find(key).text, height) for key in ("ymin", "ymax"))
            if xmax - xmin == 0 or ymax - ymin == 0:
                continue
            names.append(name)
    except (ElementTree.ParseError, AttributeError, TypeError, ValueError) as error:
        raise StageError(f"{xml_path}: malformed VOC annotation ({error}); it needs <size> and <object> "
                         "elements with <name> and <bndbox>")
    unknown = sorted(set(names) - set(class_dic))
    if unknown:
        raise StageError(f"{xml_path}: unknown class name(s) {unknown}; valid names are in data/VOC_2012.json")
    if not names:
        raise StageError(f"{xml_path}: no object with a valid box; remove the image from the list")
    return names


def _clipped(text, size):
    return max(min(int(text.strip().split(".")[0]), size - 1), 0)


def one_hot(names, class_dic):
    label = np.zeros(NUM_CLASSES, dtype=np.float32)
    for name in names:
        label[class_dic[name]] = 1.0
    return label


def load_image(path):
    """An RGB PIL image, or one clear error line for a missing or corrupt file."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise StageError(f"{path}: image not found; check --data_dir and the image list")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except Exception as error:
        raise StageError(f"{path}: unreadable image ({error}); replace or remove it from the list")


def load_mask(path):
    """A VOC ground-truth mask or label PNG (class ids 0..20, 255 void) as a uint8 array."""
    return check_class_ids(load_label_png(path), path, NUM_CLASSES)


def require_files(paths, kind, advice):
    """Stop with one line naming the first missing file of `paths` and how many are missing."""
    paths = list(paths)
    missing = [path for path in paths if not path.is_file()]
    if missing:
        raise StageError(f"{missing[0]}: {kind} not found ({len(missing)} of {len(paths)} listed); {advice}")


def ground_truth(path):
    """(dataset root, image id → mask path) of evaluate.py's --gt_dir: the ground-truth folder itself
    (the published usage), or the dataset folder that holds SegmentationClass/."""
    path = pathlib.Path(path)
    if (path / "SegmentationClass").is_dir():
        path = path / "SegmentationClass"
    if not path.is_dir():
        raise StageError(f"{path}: ground-truth folder not found; pass --gt_dir (or --data_dir) "
                         "pointing at VOC's SegmentationClass/ or at the dataset folder that holds it")
    if not any(path.glob("*.png")):
        raise StageError(f"{path}: ground-truth folder holds no PNG masks; pass --gt_dir (or --data_dir) "
                         "pointing at VOC's SegmentationClass/ or at the dataset folder that holds it")
    return path.parent, functools.partial(_mask_in_folder, path)


def _mask_in_folder(folder, image_id):
    return folder / f"{image_id}.png"


class VOCData:
    """Paths and tags of a VOC-format dataset folder."""

    def __init__(self, data_dir):
        self.root = check_data_dir(data_dir)
        self.class_info = load_class_info()
        self.class_dic = self.class_info["class_dic"]

    def image_path(self, image_id):
        return self.root / IMAGE_FOLDER / f"{image_id}.jpg"

    def mask_path(self, image_id):
        return self.root / "SegmentationClass" / f"{image_id}.png"

    def image(self, image_id):
        return load_image(self.image_path(image_id))

    def mask(self, image_id):
        return load_mask(self.mask_path(image_id))

    def label(self, image_id):
        names = parse_tags(self.root / "Annotations" / f"{image_id}.xml", self.class_dic)
        return one_hot(names, self.class_dic)

    def check_images(self, ids, domain):
        """Every id of the `domain` list has its JPEG (checked up front, before any output)."""
        require_files((self.image_path(image_id) for image_id in ids), "image",
                      f"ids of {self._list_name(domain)} need JPEGImages/{{id}}.jpg; check --data_dir or the list")

    def check_masks(self, ids, domain):
        require_files((self.mask_path(image_id) for image_id in ids), "ground-truth mask",
                      f"ids of {self._list_name(domain)} need SegmentationClass/{{id}}.png; check --data_dir "
                      "or the list")

    def _list_name(self, domain):
        """The list file the ids came from (docs/design.md §2 lookup: it may be the repository's VOC list)."""
        try:
            return str(list_path(domain, self.root))
        except StageError:
            return f"the '{domain}' list"
