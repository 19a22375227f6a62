"""What a CAM method is: the pieces a classifier trainer, CAM inference and the pipeline runner take
from it. Each method is one entry (`CamMethod`) in `wsss.methods.METHODS`."""
import collections
import dataclasses
from typing import Callable, Optional

# where a training step is: `batch_size` is this process's share of --batch_size
Schedule = collections.namedtuple("Schedule", "iteration max_iteration batch_size")


@dataclasses.dataclass(frozen=True)
class CamMethod:
    """One way of training a CAM network and reading CAMs out of it.

    name             -- the registry key (`--method` of the runner and of CAM inference)
    title            -- how tables and the report name it
    tag_word         -- the word the pipeline runner puts in its classifier's tag (`{tag}@{word}`)
    train_script     -- the stage script that trains it
    add_arguments    -- parser → None: the method's own training flags
    check            -- args → None: raises ValueError on inconsistent flags, before any work
    build_model      -- (args, pretrained, num_classes) → nn.Module: the network for `num_classes`
                        foreground classes (the dataset's), with `pretrained` backbone weights
    step_losses      -- (model, batch, args, schedule) → {name: scalar tensor, ..., "total": ...}
                        (plain floats such as `alpha` are logged too); `schedule` has `iteration`,
                        `max_iteration` and `batch_size` (this process's share of --batch_size)
    training_cams    -- (model, images) → N×C×h×w CAMs in [0, 1] at the feature stride, for the
                        training-time CAM evaluation
    image_cams       -- (model, PIL image, label, scales, device, amp) → (keys, cam, hr_cam): one
                        image's CAM file content (`keys` = 0 then the present classes + 1)
    checkpoint_layout -- one line: what `experiments/models/{tag}.pth` holds (a plain state dict of
                        the network, keys as the published code names them)
    paper_flags      -- the training flags of the paper's main setting, which the pipeline runner
                        passes (every other flag keeps its default)
    training_transform -- (image_size, min_image_size, max_image_size, augment) → transform of the
                        training images, when the method has its own augmentation chain; it returns
                        (image array, None) or (image array, extra arrays), which follow the label in
                        the training batches (drawn per image in the loader workers)
    parameter_groups -- model → the four optimiser groups (pretrained weights, pretrained biases,
                        new weights, new biases), when the method's rule differs from
                        `wsss.models.backbones.parameter_groups`
    """
    name: str
    title: str
    tag_word: str
    train_script: str
    add_arguments: Callable
    check: Callable
    build_model: Callable
    step_losses: Callable
    training_cams: Callable
    image_cams: Callable
    checkpoint_layout: str
    paper_flags: dict = dataclasses.field(default_factory=dict)
    training_transform: Optional[Callable] = None
    parameter_groups: Optional[Callable] = None
