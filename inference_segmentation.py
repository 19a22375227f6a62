"""Stage 3 inference: multi-scale, flip-fused DeepLabv3+ predictions, optionally CRF-refined (SPEC §6.9).

Writes experiments/predictions/{tag}@{train|domain}@scale={scales}@iteration={iteration}/{id}.png:
class ids, or VOC colour PNGs for the test split. Existing outputs are skipped. Under torchrun, or
with --shard i/n on several machines, each process takes its share of the images.
"""
import argparse

from core import segmentation
from core.backbones import BACKBONES, NORM_LAYERS
from core.segmentation_models import SEGMENTATION_MODELS, build_segmentation_model
from tools import distributed
from tools.cli import (StageError, add_amp_argument, add_shard_argument, parse_scales, require_tag, run_script,
                       scales_type, str2bool)
from tools.datasets import ImageListDataset
from tools.experiment import WRITABLE_ADVICE, ExperimentPaths, segmentation_name
from tools.files import check_writable, load_weights
from tools.voc import NUM_CLASSES, read_image_ids


def build_parser():
    # the published command line passes --scale (a prefix of --scales): no other flag may start with it
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--num_workers", type=int, default=4, help="CRF and file-writing worker processes (0: inline)")
    parser.add_argument("--data_dir", type=str, default="../VOCtrainval_11-May-2012/", help="VOC2012-format folder")
    parser.add_argument("--architecture", type=str, default="DeepLabv3+", choices=sorted(SEGMENTATION_MODELS),
                        help="segmentation model")
    parser.add_argument("--backbone", type=str, default="resnest269", choices=sorted(BACKBONES), help="backbone")
    parser.add_argument("--mode", type=str, default="fix", choices=sorted(NORM_LAYERS), help="batch norm mode")
    parser.add_argument("--use_gn", type=str2bool, default=True, help="GroupNorm in the ASPP and decoder (True/False)")
    parser.add_argument("--tag", type=str, default="", help="the model's run name (experiments/models/{tag}.pth)")
    parser.add_argument("--domain", type=str, default="val", help="image list: val, test, train, train_aug, ...")
    parser.add_argument("--scales", type=scales_type, default="0.5,1.0,1.5,2.0", help="comma-separated image scales")
    parser.add_argument("--iteration", type=int, default=0, help="dense CRF mean-field iterations (0: no CRF)")
    parser.add_argument("--device", type=str, default=None,
                        help="torch device (default: cuda if available (cuda:LOCAL_RANK under torchrun), else cpu)")
    add_amp_argument(parser)
    add_shard_argument(parser)
    return parser


def main(args):
    require_tag(args)
    if args.iteration < 0:
        raise StageError(f"--iteration must be 0 (no CRF) or positive, got {args.iteration}")
    paths = ExperimentPaths()
    out_dir = paths.predictions(segmentation_name(args.tag, args.domain, args.scales, args.iteration))
    check_writable(out_dir, WRITABLE_ADVICE)
    ids = [image_id for image_id in distributed.share(read_image_ids(args.domain, args.data_dir), args.shard)
           if not (out_dir / f"{image_id}.png").exists()]
    dataset = ImageListDataset(args.data_dir, args.domain, ids=ids)
    device = distributed.process_device(args.device)
    model = build_segmentation_model(args.architecture, args.backbone, num_classes=NUM_CLASSES + 1, mode=args.mode,
                                     use_gn=args.use_gn, pretrained="none")
    load_weights(model, paths.model(args.tag))
    model.to(device).eval()
    segmentation.predict_split(model, dataset, out_dir, parse_scales(args.scales), args.iteration, device,
                               colour=args.domain == "test", num_workers=args.num_workers, amp=args.amp)
    print(f"predictions in {out_dir}")


if __name__ == "__main__":
    run_script(main, build_parser())
