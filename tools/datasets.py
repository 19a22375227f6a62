"""torch Datasets over a VOC-format folder (tools.voc) for each stage."""
import numpy as np
import torch
from torch.utils.data import Dataset

from tools.voc import VOCData, read_image_ids


class VOCDataset(Dataset):
    """Image ids of a split of a VOC-format folder; subclasses say what an item is."""

    def __init__(self, data_dir, domain, ids=None):
        self.data = VOCData(data_dir)
        self.ids = read_image_ids(domain, data_dir) if ids is None else list(ids)

    def __len__(self):
        return len(self.ids)


class ClassificationDataset(VOCDataset):
    """(image CHW float32, one-hot label). Tags are parsed up front so a bad XML fails at once."""

    def __init__(self, data_dir, domain, transform):
        super().__init__(data_dir, domain)
        self.transform = transform
        self.labels = [self.data.label(image_id) for image_id in self.ids]

    def __getitem__(self, index):
        image, _ = self.transform(self.data.image(self.ids[index]))
        return torch.from_numpy(image), torch.from_numpy(self.labels[index])


class ClassificationEvalDataset(ClassificationDataset):
    """(image, one-hot label, ground-truth mask), for the per-epoch CAM evaluation."""

    def __getitem__(self, index):
        image_id = self.ids[index]
        image, mask = self.transform(self.data.image(image_id), self.data.mask(image_id))
        return torch.from_numpy(image), torch.from_numpy(self.labels[index]), torch.from_numpy(mask.astype(np.int64))


class ImageListDataset(VOCDataset):
    """(image id, PIL image) for per-image inference stages; `with_labels` adds the one-hot label."""

    def __init__(self, data_dir, domain, ids=None, with_labels=False):
        super().__init__(data_dir, domain, ids)
        self.with_labels = with_labels

    def __getitem__(self, index):
        image_id = self.ids[index]
        image = self.data.image(image_id)
        if self.with_labels:
            return image_id, image, self.data.label(image_id)
        return image_id, image


def single_item(batch):
    """collate_fn for batch_size=1 loaders of PIL images: the item itself."""
    return batch[0]
