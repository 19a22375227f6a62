"""Training of the CAM classifier, with and without the puzzle module (SPEC §4, §5, §6.1).

`train_classification.py` and `train_classification_with_puzzle.py` are thin wrappers over
`add_arguments` and `train`.
"""
import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from core import losses, puzzle
from core.backbones import NORM_LAYERS, BACKBONES, parameter_groups
from core.cam import maps_to_label
from core.classifier import Classifier, make_cam
from tools import distributed
from tools.cli import (StageError, add_pretrained_argument, add_sync_bn_argument, add_training_arguments,
                       check_batch_size, require_tag)
from tools.datasets import ClassificationDataset, ClassificationEvalDataset
from tools.experiment import ExperimentPaths
from tools.metrics import SegmentationMetric
from tools.optim import build_groups, training_optimizer
from tools.training import fit, set_seed, start_run, training_loader
from tools.transforms import TopLeftCropTransform, TrainTransform, parse_augment
from tools.visualize import denormalize, heatmap_overlay

CAM_THRESHOLDS = [round(0.10 + 0.05 * index, 2) for index in range(8)]  # 0.10 … 0.45


def add_arguments(parser, puzzle_branch):
    add_training_arguments(parser)
    model = parser.add_argument_group("model")
    model.add_argument("--architecture", type=str, default="resnet50", choices=sorted(BACKBONES), help="backbone")
    model.add_argument("--mode", type=str, default="normal", choices=sorted(NORM_LAYERS),
                       help="batch norm: normal, or fix (frozen statistics)")
    add_sync_bn_argument(model)
    add_pretrained_argument(model)
    model.add_argument("--augment", type=str, default="",
                       help="photometric augmentations joined by '_': colorjitter, randaugment")
    if puzzle_branch:
        group = parser.add_argument_group("puzzle")
        group.add_argument("--num_pieces", type=int, default=4, help="pieces per image (a square number)")
        group.add_argument("--loss_option", type=str, default="cl_pcl_re",
                           help="loss terms joined by '_': cl, pcl, re, conf")
        group.add_argument("--level", type=str, default="feature", choices=["feature", "cam"],
                           help="compare raw feature maps or CAMs in the reconstruction loss")
        group.add_argument("--re_loss", type=str, default="L1_Loss", choices=sorted(losses.RE_LOSSES),
                           help="elementwise reconstruction loss")
        group.add_argument("--re_loss_option", type=str, default="masking", choices=sorted(losses.RE_LOSS_OPTIONS),
                           help="how the reconstruction loss is reduced")
        group.add_argument("--alpha", type=float, default=1.0, help="weight of the reconstruction loss")
        group.add_argument("--alpha_schedule", type=float, default=0.50,
                           help="fraction of training over which alpha ramps up linearly (0: constant)")


def puzzle_losses(model, images, labels, args, alpha, batch_size):
    """The losses of one puzzle iteration (SPEC §4) as a dict of scalar tensors, with `total`.

    `batch_size` is the merge's chunk: the configured batch (a published quirk), which under
    torchrun is this process's part of it.
    """
    terms = losses.parse_loss_option(args.loss_option)
    logits, features = model(images, with_cam=True)
    tiled_logits, tiled_features = model(puzzle.tile(images, args.num_pieces), with_cam=True)
    re_features = puzzle.merge(tiled_features, args.num_pieces, batch_size)
    if args.level == "cam":
        features, re_features = make_cam(features), make_cam(re_features)
    zero = logits.new_zeros(())
    result = {"class_loss": losses.class_loss(logits, labels)}
    result["p_class_loss"] = losses.class_loss(re_features.mean(dim=(2, 3)), labels) if "pcl" in terms else zero
    result["re_loss"] = (losses.re_loss(features, re_features, labels, args.re_loss, args.re_loss_option)
                         if "re" in terms else zero)
    result["conf_loss"] = losses.shannon_entropy_loss(tiled_logits) if "conf" in terms else zero
    result["total"] = result["class_loss"] + result["p_class_loss"] + alpha * result["re_loss"] + result["conf_loss"]
    return result


def plain_losses(model, images, labels):
    loss = losses.class_loss(model(images), labels)
    return {"class_loss": loss, "total": loss}


@torch.no_grad()
def evaluate_cams(model, loader, device, thresholds=CAM_THRESHOLDS, progress=True):
    """Train-split CAM mIoU per background threshold (SPEC §6.1): CAMs at 1/16 masked by the
    labels, ground truth resized (nearest) to the CAM size. Returns ({th: scores}, first batch)."""
    import cv2

    metrics = {threshold: SegmentationMetric() for threshold in thresholds}
    keys = np.arange(21)
    was_training = model.training
    model.eval()
    sample = None
    for images, labels, masks in tqdm(loader, desc="evaluate CAMs", leave=False, disable=not progress):
        _, features = model(images.to(device), with_cam=True)
        cams = (make_cam(features) * labels.to(device)[:, :, None, None]).cpu().numpy()
        if sample is None:
            sample = (images.numpy(), cams, labels.numpy())
        for cam, mask in zip(cams, masks.numpy()):
            small_mask = cv2.resize(mask.astype(np.uint8), (cam.shape[2], cam.shape[1]),
                                    interpolation=cv2.INTER_NEAREST)
            for threshold in thresholds:
                metrics[threshold].update(maps_to_label(cam, keys, threshold), small_mask)
    model.train(was_training)
    return {threshold: metric.scores() for threshold, metric in metrics.items()}, sample


def check_sizes(args, puzzle_branch, dataset_size):
    check_batch_size(dataset_size, args.batch_size)
    if puzzle_branch:
        side = puzzle.pieces_per_side(args.num_pieces)
        if args.image_size % (16 * side):
            raise StageError(f"--image_size {args.image_size} must be a multiple of {16 * side} "
                             f"(output stride 16 × {side} pieces per side) for the puzzle merge")
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


def train(args, puzzle_branch):
    require_tag(args)
    try:
        parse_augment(args.augment)
        if puzzle_branch:
            losses.parse_loss_option(args.loss_option)
            puzzle.pieces_per_side(args.num_pieces)
    except ValueError as error:
        raise StageError(str(error))
    ExperimentPaths().check_training_writable(args.tag)
    set_seed(args.seed)
    device = distributed.setup(args.device)
    train_set = ClassificationDataset(args.data_dir, "train_aug", TrainTransform(
        args.image_size, args.min_image_size, args.max_image_size, args.augment))
    eval_set = ClassificationEvalDataset(args.data_dir, "train", TopLeftCropTransform(args.image_size))
    check_sizes(args, puzzle_branch, len(train_set))
    model = Classifier(args.architecture, mode=args.mode, pretrained=args.pretrained).to(device)

    paths, log = start_run(args)
    train_loader = training_loader(train_set, args, device)
    eval_loader = DataLoader(eval_set, batch_size=min(args.batch_size, 16), num_workers=args.num_workers)
    optimizer = training_optimizer(build_groups(parameter_groups(model), args.lr, args.wd), args, len(train_loader))
    max_iteration = optimizer.max_step
    model = distributed.wrap_model(model, device, args.sync_bn)

    def step_losses(model, batch, iteration):
        images, labels = (tensor.to(device) for tensor in batch)
        if not puzzle_branch:
            return plain_losses(model, images, labels)
        alpha = losses.alpha_at(iteration, max_iteration, args.alpha, args.alpha_schedule)
        return {"alpha": alpha, **puzzle_losses(model, images, labels, args, alpha, train_loader.batch_size)}

    def evaluate(model):
        scores, sample = evaluate_cams(model, eval_loader, device)
        threshold = max(scores, key=lambda th: scores[th]["mIoU"])
        best = scores[threshold]
        return ({"threshold": threshold, "mIoU": best["mIoU"], "FP": best["FP"], "FN": best["FN"]},
                {"cams": cam_overlays(sample)})

    return fit(args, model, train_loader, optimizer, step_losses, evaluate, paths, log)
