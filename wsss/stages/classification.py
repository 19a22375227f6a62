"""Training of a CAM network (any method of `wsss.methods`), with its CAMs evaluated on the train
split after every epoch (the published model selection).

The image lists are train_aug (training) and train (evaluation), or those a method's flags name
(CPN's `--train_list` and `--val_list`). A method's training transform may return arrays drawn per
image besides the image (CPN's complementary masks); they follow the label in each batch.

`train_classification.py`, `train_classification_with_puzzle.py` and the other methods' training
scripts are thin wrappers over `add_arguments` and `train`.
"""

import numpy as np
import torch
from torch.utils.data import DataLoader

from wsss.algorithms.cam import maps_to_label
from wsss.data.dataset_registry import add_dataset_argument, get_dataset
from wsss.data.datasets import ClassificationDataset, ClassificationEvalDataset, first_items
from wsss.data.transforms import TopLeftCropTransform, TrainTransform, parse_augment
from wsss.data.visualize import denormalize, heatmap_overlay
from wsss.methods.base import Schedule
from wsss.models.backbones import parameter_groups
from wsss.utils import distributed
from wsss.utils.cli import (
    add_eval_images_argument,
    add_training_arguments,
    check_batch_size,
    check_eval_images,
    require_tag,
)
from wsss.utils.errors import StageError, as_stage_error
from wsss.utils.logs import progress as progress_bar
from wsss.utils.metrics import SegmentationMetric
from wsss.utils.optim import build_groups, training_optimizer
from wsss.utils.paths import ExperimentPaths
from wsss.utils.processes import loader_worker_setup
from wsss.utils.training import fit, set_seed, start_run, training_loader

CAM_THRESHOLDS = [round(0.10 + 0.05 * index, 2) for index in range(8)]  # 0.10 … 0.45
TRAIN_LIST, EVAL_LIST = "train_aug", "train"


class TrainingDataset(ClassificationDataset):
    """(image, one-hot label, *extras): `extras` are the arrays the transform returns after the
    image (none for the shared chain, which returns (image, None))."""

    def __getitem__(self, index):
        image, extras = self.transform(self.data.image(self.ids[index]))
        return (torch.from_numpy(image), torch.from_numpy(self.labels[index]),
                *(torch.as_tensor(extra) for extra in extras or ()))


def add_arguments(parser, method):
    """The shared training flags, then the method's own."""
    training = add_training_arguments(parser)
    add_dataset_argument(training)
    add_eval_images_argument(training, "the evaluation list (train; CPN: --val_list)")
    method.add_arguments(parser)


@torch.no_grad()
def evaluate_cams(model, training_cams, loader, device, thresholds=CAM_THRESHOLDS, progress=True):
    """Train-split CAM mIoU per background threshold (docs/design.md §6.1): CAMs at 1/16 masked by the
    labels, ground truth resized (nearest) to the CAM size. Returns ({th: scores}, first batch)."""
    import cv2

    metrics = None
    was_training = model.training
    model.eval()
    sample = None
    for images, labels, masks in progress_bar(loader, desc="evaluate CAMs", leave=False, disable=not progress):
        cams = (training_cams(model, images.to(device)) * labels.to(device)[:, :, None, None]).cpu().numpy()
        if sample is None:
            sample = (images.numpy(), cams, labels.numpy())
            keys = np.arange(cams.shape[1] + 1)
            metrics = {threshold: SegmentationMetric(len(keys)) for threshold in thresholds}
        for cam, mask in zip(cams, masks.numpy()):
            small_mask = cv2.resize(mask.astype(np.uint8), (cam.shape[2], cam.shape[1]),
                                    interpolation=cv2.INTER_NEAREST)
            for threshold in thresholds:
                metrics[threshold].update(maps_to_label(cam, keys, threshold), small_mask)
    model.train(was_training)
    return {threshold: metric.scores() for threshold, metric in metrics.items()}, sample


def check_sizes(args, dataset_size):
    check_batch_size(dataset_size, args.batch_size)
    if args.min_image_size > args.max_image_size:
        raise StageError("--min_image_size must not exceed --max_image_size")
    if args.sync_bn and args.mode != "normal":
        raise StageError(f"--sync_bn True applies to --mode normal (--mode {args.mode} has no batch statistics)")


def cam_overlays(sample, limit=4):
    """Image | CAM-overlay pairs for TensorBoard (N×H×W×3 uint8)."""
    images, cams, labels = sample
    pictures = []
    for image, cam, label in list(zip(images, cams, labels))[:limit]:
        rgb = denormalize(image)
        present = np.nonzero(label)[0]
        heat = cam[present].max(axis=0) if present.size else np.zeros(cam.shape[1:], np.float32)
        pictures.append(np.concatenate([rgb, heatmap_overlay(rgb, heat)], axis=1))
    return np.stack(pictures)


def train(args, method):
    """Train `method`'s CAM network on train_aug (or its --train_list), evaluating its CAMs on train
    (or its --val_list) after every epoch."""
    require_tag(args)
    check_eval_images(args)
    with as_stage_error(ValueError):
        parse_augment(args.augment)
        method.check(args)
    ExperimentPaths().check_training_writable(args.tag)
    set_seed(args.seed)
    device = distributed.setup(args.device)
    transform = (method.training_transform or TrainTransform)(
        args.image_size, args.min_image_size, args.max_image_size, args.augment)
    options = vars(args)
    benchmark = get_dataset(args.dataset)
    train_set = TrainingDataset(benchmark, args.data_dir, options.get("train_list", TRAIN_LIST), transform)
    eval_set = first_items(ClassificationEvalDataset(benchmark, args.data_dir, options.get("val_list", EVAL_LIST),
                                                     TopLeftCropTransform(args.image_size)), args.eval_images)
    check_sizes(args, len(train_set))
    with as_stage_error():
        model = method.build_model(args, args.pretrained, benchmark.num_classes).to(device)

    paths, log = start_run(args)
    train_loader = training_loader(train_set, args, device)
    eval_loader = DataLoader(eval_set, batch_size=min(args.batch_size, 16), num_workers=args.num_workers,
                             worker_init_fn=loader_worker_setup)
    groups = (method.parameter_groups or parameter_groups)(model)
    optimizer = training_optimizer(build_groups(groups, args.lr, args.wd), args, len(train_loader))
    model = distributed.wrap_model(model, device, args.sync_bn)

    def step_losses(model, batch, iteration):
        schedule = Schedule(iteration, optimizer.max_step, train_loader.batch_size)
        return method.step_losses(model, [tensor.to(device) for tensor in batch], args, schedule)

    def evaluate(model):
        scores, sample = evaluate_cams(model, method.training_cams, eval_loader, device)
        threshold = max(scores, key=lambda th: scores[th]["mIoU"])
        best = scores[threshold]
        return ({"threshold": threshold, "mIoU": best["mIoU"], "FP": best["FP"], "FN": best["FN"]},
                {"cams": cam_overlays(sample)})

    return fit(args, model, train_loader, optimizer, step_losses, evaluate, paths, log)
