"""Stage 3: training DeepLabv3+ on pseudo labels (docs/design.md §6.8) and multi-scale inference (§6.9).

`train_segmentation.py` and `inference_segmentation.py` are thin wrappers over `train` and
`predict_split`.
"""
import collections
import contextlib
import functools
import pathlib

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from wsss.algorithms.cam import flip_fused_output, resize_maps
from wsss.algorithms.crf import probability_crf
from wsss.data.dataset_registry import get_dataset
from wsss.data.datasets import LabelMapDataset, check_label_folder, first_items
from wsss.data.transforms import TopLeftCropTransform, TrainTransform
from wsss.data.visualize import colour_label, denormalize
from wsss.models.backbones import parameter_groups
from wsss.models.segmentation_models import build_segmentation_model
from wsss.utils import distributed
from wsss.utils.cli import check_batch_size, check_eval_images, require_tag
from wsss.utils.errors import StageError, as_stage_error
from wsss.utils.files import save_colour_png, save_label_png
from wsss.utils.labels import IGNORE_LABEL
from wsss.utils.logs import progress as progress_bar
from wsss.utils.metrics import SegmentationMetric
from wsss.utils.optim import build_groups, training_optimizer
from wsss.utils.paths import ExperimentPaths
from wsss.utils.processes import loader_worker_setup, worker_pool
from wsss.utils.training import fit, set_seed, start_run, training_loader


def segmentation_loss(logits, labels):
    """Pixel-wise cross-entropy, mean over the pixels whose label is not 255."""
    return F.cross_entropy(logits, labels, ignore_index=IGNORE_LABEL)


def check_arguments(args):
    require_tag(args)
    check_eval_images(args)
    if not args.label_name:
        raise StageError("--label_name is required: the pseudo-label folder under --pred_dir")
    if args.min_image_size > args.max_image_size:
        raise StageError("--min_image_size must not exceed --max_image_size")
    if args.sync_bn and args.mode != "normal":
        raise StageError(f"--sync_bn True applies to --mode normal (--mode {args.mode} has no batch statistics)")


@torch.no_grad()
def evaluate(model, loader, device, num_classes, progress=True):
    """Validation mIoU over `num_classes` (with background) of the argmax at input size; also returns
    the first batch for pictures."""
    metric = SegmentationMetric(num_classes)
    was_training = model.training
    model.eval()
    sample = None
    for images, masks in progress_bar(loader, desc="validate", leave=False, disable=not progress):
        predictions = model(images.to(device)).argmax(dim=1).cpu().numpy()
        if sample is None:
            sample = (images.numpy(), predictions, masks.numpy())
        for prediction, mask in zip(predictions, masks.numpy()):
            metric.update(prediction, mask)
    model.train(was_training)
    return metric.scores(), sample


def prediction_overlays(sample, limit=4):
    """Image | prediction | ground truth, VOC-coloured, for TensorBoard (N×H×3W×3 uint8)."""
    images, predictions, masks = sample
    return np.stack([np.concatenate([denormalize(image), colour_label(prediction), colour_label(mask)], axis=1)
                     for image, prediction, mask in list(zip(images, predictions, masks))[:limit]])


def train(args):
    check_arguments(args)
    ExperimentPaths().check_training_writable(args.tag)
    set_seed(args.seed)
    torch.autograd.set_detect_anomaly(args.detect_anomaly)
    device = distributed.setup(args.device)
    label_dir = ExperimentPaths(pred_dir=args.pred_dir).predictions(args.label_name)
    benchmark = get_dataset(args.dataset)
    train_set = LabelMapDataset(benchmark, args.data_dir, "train_aug", TrainTransform(
        args.image_size, args.min_image_size, args.max_image_size), label_dir=label_dir)
    check_label_folder(label_dir, train_set.ids, "pseudo label", "make_pseudo_labels.py")
    check_batch_size(len(train_set), args.batch_size)
    valid_set = first_items(LabelMapDataset(benchmark, args.data_dir, "val", TopLeftCropTransform(args.image_size)),
                            args.eval_images)
    with as_stage_error():
        model = build_segmentation_model(args.architecture, args.backbone, num_classes=benchmark.num_classes + 1,
                                         mode=args.mode, use_gn=args.use_gn, pretrained=args.pretrained).to(device)

    paths, log = start_run(args)
    train_loader = training_loader(train_set, args, device)
    valid_loader = DataLoader(valid_set, batch_size=min(args.batch_size, 16), num_workers=args.num_workers,
                              worker_init_fn=loader_worker_setup)
    optimizer = training_optimizer(build_groups(parameter_groups(model), args.lr, args.wd), args, len(train_loader))
    model = distributed.wrap_model(model, device, args.sync_bn)

    def step_losses(model, batch, iteration):
        images, labels = (tensor.to(device) for tensor in batch)
        return {"total": segmentation_loss(model(images), labels)}

    def validate(model):
        scores, sample = evaluate(model, valid_loader, device, benchmark.num_classes + 1)
        return ({name: scores[name] for name in ("mIoU", "FP", "FN")},
                {"predictions": prediction_overlays(sample)})

    return fit(args, model, train_loader, optimizer, step_losses, validate, paths, log)


def fused_logits(model, image, scales, device, amp="off"):
    """Σ over scales of the flip-fused logits, each resized (bilinear, align_corners=False) to the
    image size: C×H×W.

    The published code resizes the plain and the flipped logits first and fuses them after; here
    the fused logits are resized. Bilinear resizing is linear and commutes with a horizontal flip,
    so both give the same sum up to float rounding.
    """
    width, height = image.size
    total = 0
    for scale in scales:
        total = total + resize_maps(flip_fused_output(model, image, scale, device, amp), (height, width))
    return total


@torch.no_grad()
def predict_probabilities(model, image, scales, device, amp="off"):
    """Softmax over classes of the multi-scale, flip-fused logits (C×H×W float32 numpy)."""
    return torch.softmax(fused_logits(model, image, scales, device, amp), dim=0).cpu().numpy()


def write_prediction(path, image, probabilities, iteration, palette=None):
    """Refine with the probability CRF (t = iteration, none when 0), argmax, write the PNG: class
    ids, or with a `palette` (flat RGB list) a colour PNG (VOC's test server format)."""
    if iteration > 0:
        probabilities = probability_crf(image, probabilities, t=iteration)
    label = np.argmax(probabilities, axis=0)
    if palette is not None:
        save_colour_png(path, label, palette)
    else:
        save_label_png(path, label)


def predict_split(model, dataset, out_dir, scales, iteration, device, palette=None, num_workers=0, progress=True,
                  amp="off"):
    """`{id}.png` for every (id, PIL image) of `dataset`. The network runs here (in the precision of
    `amp`); the CRF, argmax and write run in `num_workers` processes (inline when 0), so the outputs
    do not depend on it."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = functools.partial(write_prediction, iteration=iteration, palette=palette)
    with worker_pool(num_workers) if num_workers > 0 else contextlib.nullcontext() as pool:
        pending = collections.deque()
        for index in progress_bar(range(len(dataset)), desc=out_dir.name, disable=not progress):
            image_id, image = dataset[index]
            arguments = (out_dir / f"{image_id}.png", np.array(image),  # writable: pydensecrf needs it
                         predict_probabilities(model, image, scales, device, amp))
            if pool is None:
                work(*arguments)
                continue
            pending.append(pool.apply_async(work, arguments))
            while len(pending) > 2 * num_workers:  # bounded: the network may outrun the CRF
                pending.popleft().get()
        while pending:
            pending.popleft().get()
