"""Command-line helpers shared by the stage scripts."""
import argparse
import sys

from wsss.utils.errors import StageError, one_line

TRUE_WORDS = ("yes", "true", "t", "y", "1")
FALSE_WORDS = ("no", "false", "f", "n", "0")


def str2bool(text):
    """Parse the published boolean spellings (yes/true/t/y/1, no/false/f/n/0)."""
    if isinstance(text, bool):
        return text
    word = str(text).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (one of {TRUE_WORDS + FALSE_WORDS}), got {text!r}")


def scales_type(text):
    """`0.5,1.0,1.5` -> the text itself, validated; experiment names keep the scales as typed."""
    try:
        values = [float(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers such as 0.5,1.0,1.5,2.0, got {text!r}")
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"scales must be positive numbers, got {text!r}")
    return text


def parse_scales(text):
    return [float(s) for s in text.split(",")]


INTERRUPTED = ("interrupted: every output already written is complete (files are written atomically); "
               "rerun the same command to continue (a training run: add --resume True)")


def run_script(main, parser, argv=None):
    """Parse arguments and run `main(args)`. A StageError, or a file the system refuses to create or
    write (no permission, no space), ends in one line and exit status 2; Ctrl-C in one line and
    exit status 130, the shell's code for SIGINT."""
    args = parser.parse_args(argv)
    try:
        return main(args)
    except StageError as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        sys.exit(2)
    except OSError as error:
        if error.filename is None:
            raise
        print(f"error: {error.filename}: {error.strerror}; choose a folder you can write to (or free space)",
              file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        sys.exit(130)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """--help keeps the description's line breaks and shows every flag's default."""


DOMAINS = ("train", "train_aug", "val", "test")


def add_domain_argument(parser, default="train", help_text="image list"):
    """--domain: a list name (the published four, or any list the dataset brings) or a .txt list
    file; the four are shown as its choices without refusing others."""
    parser.add_argument("--domain", type=str, default=default, metavar="{" + ",".join(DOMAINS) + "}",
                        help=f"{help_text}: train, train_aug, val or test (COCO: train = train_aug, val), another "
                             "list of the dataset (VOC: ImageSets/Segmentation/, COCO: ImageSets/) or a .txt file "
                             "of image ids")


def add_training_arguments(parser, **defaults):
    """Flags every training script shares; `defaults` overrides the published per-script values."""
    values = dict(seed=0, num_workers=4, batch_size=32, max_epoch=15, lr=0.1, wd=1e-4, nesterov=True,
                  image_size=512, min_image_size=320, max_image_size=640, print_ratio=0.1)
    values.update(defaults)
    group = parser.add_argument_group("training")
    group.add_argument("--seed", type=int, default=values["seed"], help="random seed")
    group.add_argument("--num_workers", type=int, default=values["num_workers"], help="data loader worker processes")
    group.add_argument("--data_dir", type=str, default=values.get("data_dir", "../VOCtrainval_11-May-2012/"),
                       help="dataset folder in --dataset's layout (VOC 2012: JPEGImages/, Annotations/, "
                            "SegmentationClass/; COCO 2014: train2014/, val2014/, annotations/, mask/)")
    group.add_argument("--batch_size", type=int, default=values["batch_size"],
                       help="images per iteration (all GPUs and torchrun processes together)")
    group.add_argument("--max_epoch", type=int, default=values["max_epoch"], help="training epochs")
    group.add_argument("--lr", type=float, default=values["lr"], help="base learning rate (pretrained weights)")
    group.add_argument("--wd", type=float, default=values["wd"], help="weight decay")
    group.add_argument("--nesterov", type=str2bool, default=values["nesterov"], help="Nesterov momentum (True/False)")
    group.add_argument("--momentum", type=float, default=None,
                       help="SGD momentum; default: the published quirk, momentum = --wd (see README)")
    group.add_argument("--image_size", type=int, default=values["image_size"], help="training crop size")
    group.add_argument("--min_image_size", type=int, default=values["min_image_size"], help="min long side of the random resize")
    group.add_argument("--max_image_size", type=int, default=values["max_image_size"], help="max long side of the random resize")
    group.add_argument("--print_ratio", type=float, default=values["print_ratio"], help="log every this fraction of an epoch")
    group.add_argument("--tag", type=str, default="", help="run name: experiments/models/{tag}.pth etc.")
    group.add_argument("--device", type=str, default=None, help="torch device (default: cuda if available, else cpu)")
    add_amp_argument(group)
    group.add_argument("--resume", type=str2bool, nargs="?", const=True, default=False,
                       help="continue a stopped run from experiments/models/{tag}.state.pth (the training "
                            "state written after every epoch); same flags as the stopped run")
    return group


def add_eval_images_argument(parser, evaluated):
    """--eval_images of the trainers that score their `evaluated` list after every epoch."""
    parser.add_argument("--eval_images", type=int, default=0, metavar="N",
                        help=f"score only the first N images of {evaluated} after every epoch (0: all of them, "
                             "as published; worth setting on COCO, whose lists have 40,504 and 82,783 images)")


def check_eval_images(args):
    if args.eval_images < 0:
        raise StageError(f"--eval_images {args.eval_images}: must be 0 (every image) or a positive count")


AMP_CHOICES = ("off", "bf16", "fp16")


def add_amp_argument(parser):
    parser.add_argument("--amp", type=str, default="off", choices=AMP_CHOICES,
                        help="mixed precision: off (float32, as published), bf16 or fp16 autocast "
                             "(fp16 on CUDA with a gradient scaler)")


def add_model_stage_arguments(parser):
    """--device, --amp and --shard of the stages that run a trained network over an image list."""
    parser.add_argument("--device", type=str, default=None,
                        help="torch device (default: cuda if available (cuda:LOCAL_RANK under torchrun), else cpu)")
    add_amp_argument(parser)
    add_shard_argument(parser)


def add_sync_bn_argument(parser):
    parser.add_argument("--sync_bn", type=str2bool, default=False,
                        help="under torchrun with --mode normal: SyncBatchNorm, batch statistics over all "
                             "processes (CUDA only; True/False)")


def shard_type(text):
    """`i/n` -> (i, n) with 0 <= i < n."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected i/n such as 0/4 (shard i of n, counted from 0), got {text!r}")
    if count < 1 or not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"shard i/n needs n >= 1 and 0 <= i < n, got {text!r}")
    return index, count


def add_shard_argument(parser):
    parser.add_argument("--shard", type=shard_type, default=None,
                        help="i/n: process only the i-th of n interleaved parts of the image list (i = 0…n−1), "
                             "e.g. one part per machine sharing experiments/; under torchrun each part is "
                             "split again over the processes")


def add_pretrained_argument(parser):
    parser.add_argument("--pretrained", type=str, default="imagenet",
                        help="initial backbone weights: imagenet (the published file from the torch hub "
                             "cache, ~/.cache/torch/hub/checkpoints), none (scratch) or a weight file path")


def require_tag(args):
    if not args.tag:
        raise StageError("--tag is required: it names the run's outputs under experiments/")


def check_batch_size(dataset_size, batch_size):
    if dataset_size < batch_size:
        raise StageError(f"the training list has {dataset_size} images, fewer than --batch_size "
                         f"{batch_size}; lower --batch_size")
