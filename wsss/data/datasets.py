"""torch Datasets over a dataset folder for each stage; `benchmark` is an entry of
wsss.data.dataset_registry (VOC 2012, COCO 2014), which knows the folder's layout."""
import pathlib

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Subset

from wsss.utils.errors import StageError


class ImageFolderDataset(Dataset):
    """Image ids of a list of a dataset folder; subclasses say what an item is."""

    def __init__(self, benchmark, data_dir, domain, ids=None):
        self.benchmark = benchmark
        self.data = benchmark.open(data_dir)
        self.ids = benchmark.image_ids(domain, data_dir) if ids is None else list(ids)
        self.data.check_images(self.ids, domain)

    def __len__(self):
        return len(self.ids)


class ClassificationDataset(ImageFolderDataset):
    """(image CHW float32, one-hot label). Labels are read up front, so a bad annotation fails at once."""

    def __init__(self, benchmark, data_dir, domain, transform):
        super().__init__(benchmark, data_dir, domain)
        self.transform = transform
        self.labels = [self.data.label(image_id) for image_id in self.ids]

    def __getitem__(self, index):
        image, _ = self.transform(self.data.image(self.ids[index]))
        return torch.from_numpy(image), torch.from_numpy(self.labels[index])


class ClassificationEvalDataset(ClassificationDataset):
    """(image, one-hot label, ground-truth mask), for the per-epoch CAM evaluation."""

    def __init__(self, benchmark, data_dir, domain, transform):
        super().__init__(benchmark, data_dir, domain, transform)
        self.data.check_masks(self.ids, domain)

    def __getitem__(self, index):
        image_id = self.ids[index]
        image, mask = self.transform(self.data.image(image_id), self.data.mask(image_id))
        return torch.from_numpy(image), torch.from_numpy(self.labels[index]), torch.from_numpy(mask.astype(np.int64))


def check_label_folder(label_dir, ids, kind, producer):
    """Every listed id has `{label_dir}/{id}.png`, else one error naming the first missing file and
    the count; `kind` names the labels ("pseudo label"), `producer` the script that writes them."""
    label_dir = pathlib.Path(label_dir)
    if not label_dir.is_dir():
        raise StageError(f"{label_dir}: {kind} folder not found; run {producer} first "
                         "or check --label_name and --pred_dir")
    missing = [image_id for image_id in ids if not (label_dir / f"{image_id}.png").is_file()]
    if missing:
        raise StageError(f"{label_dir / missing[0]}.png: {kind} missing ({len(missing)} of {len(ids)} "
                         f"train_aug images have none); rerun {producer} on --domain train_aug")


class LabelMapDataset(ImageFolderDataset):
    """(image CHW float32, label map int64) through a joint transform: the ground-truth masks, or
    with `label_dir` the label PNGs `{label_dir}/{id}.png` of an earlier stage (pseudo labels)."""

    def __init__(self, benchmark, data_dir, domain, transform, label_dir=None):
        super().__init__(benchmark, data_dir, domain)
        self.transform = transform
        self.label_dir = None if label_dir is None else pathlib.Path(label_dir)
        if label_dir is None:
            self.data.check_masks(self.ids, domain)

    def label_path(self, image_id):
        return self.data.mask_path(image_id) if self.label_dir is None else self.label_dir / f"{image_id}.png"

    def __getitem__(self, index):
        image_id = self.ids[index]
        label = Image.fromarray(self.benchmark.load_mask(self.label_path(image_id)))
        image, label = self.transform(self.data.image(image_id), label)
        return torch.from_numpy(image), torch.from_numpy(label.astype(np.int64))


class ImageListDataset(ImageFolderDataset):
    """(image id, PIL image) for per-image inference stages; `with_labels` adds the one-hot label
    (read up front, so a bad annotation fails before any output)."""

    def __init__(self, benchmark, data_dir, domain, ids=None, with_labels=False):
        super().__init__(benchmark, data_dir, domain, ids)
        self.labels = [self.data.label(image_id) for image_id in self.ids] if with_labels else None

    def __getitem__(self, index):
        image_id = self.ids[index]
        image = self.data.image(image_id)
        if self.labels is not None:
            return image_id, image, self.labels[index]
        return image_id, image


def first_items(dataset, count):
    """The first `count` items of `dataset` (all of them when `count` is 0 or more than it has)."""
    if count <= 0 or count >= len(dataset):
        return dataset
    return Subset(dataset, range(count))
