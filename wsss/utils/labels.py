"""The label-map convention every dataset and stage shares: 0 is background, 1..K the classes, and
IGNORE_LABEL marks pixels that are neither scored nor trained on (VOC's void boundary, the
affinity labels' unsure pixels, crop padding)."""
import numpy as np

from wsss.utils.errors import StageError

IGNORE_LABEL = 255


def check_class_ids(label, path, num_classes, void=True):
    """`label` itself if its values are class ids 0..`num_classes` (and IGNORE_LABEL when `void`), else
    one error naming the file and the values outside."""
    allowed = np.r_[np.arange(num_classes + 1), IGNORE_LABEL] if void else np.arange(num_classes + 1)
    invalid = np.setdiff1d(np.unique(label), allowed)
    if invalid.size:
        raise StageError(f"{path}: values {invalid.tolist()[:5]} outside 0-{num_classes}{'/255' if void else ''}; "
                         "is this a class-id PNG of this pipeline? replace or regenerate it")
    return label
