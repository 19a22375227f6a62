"""Puzzle-CAM and its baseline: a classifier (backbone + 1×1 class convolution) whose CAMs are its
class feature maps. The baseline trains it with the classification loss alone
(`train_classification.py`); Puzzle-CAM adds the tiled branch (`train_classification_with_puzzle.py`):
the image cut into pieces, each piece's features computed on its own, merged back, and compared with
the whole image's features (reconstruction loss), plus the merged features' own classification loss."""

from wsss.algorithms import losses, puzzle
from wsss.algorithms.cam import multiscale_cams
from wsss.methods.base import CamMethod
from wsss.models.backbones import BACKBONES, NORM_LAYERS
from wsss.models.classifier import Classifier, make_cam
from wsss.utils.cli import add_pretrained_argument, add_sync_bn_argument

CHECKPOINT_LAYOUT = ("the classifier's state dict: model.* (the backbone as its package names it) and "
                     "classifier.weight (K×C×1×1, K classes: 20 on VOC, 80 on COCO)")


def add_classifier_arguments(parser):
    model = parser.add_argument_group("model")
    model.add_argument("--architecture", type=str, default="resnet50", choices=sorted(BACKBONES), help="backbone")
    model.add_argument("--mode", type=str, default="normal", choices=sorted(NORM_LAYERS),
                       help="batch norm: normal, or fix (frozen statistics)")
    add_sync_bn_argument(model)
    add_pretrained_argument(model)
    model.add_argument("--augment", type=str, default="",
                       help="photometric augmentations joined by '_': colorjitter, randaugment")


def add_puzzle_arguments(parser):
    add_classifier_arguments(parser)
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


def check_classifier(args):
    """Nothing beyond the shared training checks."""


def check_puzzle(args):
    losses.parse_loss_option(args.loss_option)
    side = puzzle.pieces_per_side(args.num_pieces)
    if args.image_size % (16 * side):
        raise ValueError(f"--image_size {args.image_size} must be a multiple of {16 * side} "
                         f"(output stride 16 × {side} pieces per side) for the puzzle merge")


def build_classifier(args, pretrained, num_classes):
    return Classifier(args.architecture, num_classes, mode=args.mode, pretrained=pretrained)


def baseline_losses(model, batch, args, schedule):
    images, labels = batch
    loss = losses.class_loss(model(images), labels)
    return {"class_loss": loss, "total": loss}


def puzzle_losses(model, batch, args, schedule):
    """The losses of one puzzle iteration, with the ramped `alpha`.

    The merge regroups the pieces in chunks of `schedule.batch_size`: the configured batch (a
    published quirk), which under torchrun is this process's part of it.
    """
    images, labels = batch
    alpha = losses.alpha_at(schedule.iteration, schedule.max_iteration, args.alpha, args.alpha_schedule)
    terms = losses.parse_loss_option(args.loss_option)
    logits, features = model(images, with_cam=True)
    tiled_logits, tiled_features = model(puzzle.tile(images, args.num_pieces), with_cam=True)
    re_features = puzzle.merge(tiled_features, args.num_pieces, schedule.batch_size)
    if args.level == "cam":
        features, re_features = make_cam(features), make_cam(re_features)
    zero = logits.new_zeros(())
    result = {"alpha": alpha, "class_loss": losses.class_loss(logits, labels)}
    result["p_class_loss"] = losses.class_loss(re_features.mean(dim=(2, 3)), labels) if "pcl" in terms else zero
    result["re_loss"] = (losses.re_loss(features, re_features, labels, args.re_loss, args.re_loss_option)
                         if "re" in terms else zero)
    result["conf_loss"] = losses.shannon_entropy_loss(tiled_logits) if "conf" in terms else zero
    result["total"] = result["class_loss"] + result["p_class_loss"] + alpha * result["re_loss"] + result["conf_loss"]
    return result


def classifier_cams(model, images):
    return make_cam(model(images, with_cam=True)[1])


BASELINE = CamMethod(
    name="baseline", title="Classifier (no puzzle)", tag_word="Classifier", train_script="train_classification.py",
    add_arguments=add_classifier_arguments, check=check_classifier, build_model=build_classifier,
    step_losses=baseline_losses, training_cams=classifier_cams, image_cams=multiscale_cams,
    checkpoint_layout=CHECKPOINT_LAYOUT)

PUZZLE = CamMethod(
    name="puzzle", title="Puzzle-CAM", tag_word="Puzzle", train_script="train_classification_with_puzzle.py",
    add_arguments=add_puzzle_arguments, check=check_puzzle, build_model=build_classifier,
    step_losses=puzzle_losses, training_cams=classifier_cams, image_cams=multiscale_cams,
    checkpoint_layout=CHECKPOINT_LAYOUT,
    paper_flags={"loss_option": "cl_pcl_re", "re_loss_option": "masking", "re_loss": "L1_Loss",
                 "alpha_schedule": "0.50", "alpha": "4.00"})
