"""Stage 3 inference: multi-scale, flip-fused DeepLabv3+ predictions, optionally CRF-refined.

Writes experiments/predictions/{tag}@{train|domain}@scale={scales}@iteration={iteration}/{id}.png:
class ids, or VOC colour PNGs for the test split. Existing outputs are skipped. Under torchrun, or
with --shard i/n on several machines, each process takes its share of the images.
"""
import argparse

from wsss.data.dataset_registry import add_dataset_argument, get_dataset
from wsss.data.datasets import ImageListDataset
from wsss.models.backbones import BACKBONES, NORM_LAYERS
from wsss.models.segmentation_models import SEGMENTATION_MODELS, build_segmentation_model
from wsss.stages import segmentation
from wsss.utils import distributed
from wsss.utils.cli import (
    HelpFormatter,
    add_domain_argument,
    add_model_stage_arguments,
    parse_scales,
    require_tag,
    run_script,
    scales_type,
    str2bool,
)
from wsss.utils.errors import StageError, as_stage_error
from wsss.utils.files import load_weights
from wsss.utils.paths import WRITABLE_ADVICE, ExperimentPaths, segmentation_name
from wsss.utils.per_image import plan_outputs


def build_parser():
    # the published command line passes --scale (a prefix of --scales): no other flag may start with it
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--num_workers", type=int, default=4, help="CRF and file-writing worker processes (0: inline)")
    parser.add_argument("--data_dir", type=str, default="../VOCtrainval_11-May-2012/", help="dataset folder (--dataset's layout)")
    add_dataset_argument(parser)
    parser.add_argument("--architecture", type=str, default="DeepLabv3+", choices=sorted(SEGMENTATION_MODELS),
                        help="segmentation model")
    parser.add_argument("--backbone", type=str, default="resnest269", choices=sorted(BACKBONES), help="backbone")
    parser.add_argument("--mode", type=str, default="fix", choices=sorted(NORM_LAYERS), help="batch norm mode")
    parser.add_argument("--use_gn", type=str2bool, default=True, help="GroupNorm in the ASPP and decoder (True/False)")
    parser.add_argument("--tag", type=str, default="", help="the model's run name (experiments/models/{tag}.pth)")
    add_domain_argument(parser, "val")
    parser.add_argument("--scales", type=scales_type, default="0.5,1.0,1.5,2.0", help="comma-separated image scales")
    parser.add_argument("--iteration", type=int, default=0, help="dense CRF mean-field iterations (0: no CRF)")
    add_model_stage_arguments(parser)
    return parser


def main(args):
    require_tag(args)
    if args.iteration < 0:
        raise StageError(f"--iteration must be 0 (no CRF) or positive, got {args.iteration}")
    paths = ExperimentPaths()
    out_dir = paths.predictions(segmentation_name(args.tag, args.domain, args.scales, args.iteration))
    benchmark = get_dataset(args.dataset)
    ids = plan_outputs(out_dir, benchmark.image_ids(args.domain, args.data_dir), args.shard, advice=WRITABLE_ADVICE)
    dataset = ImageListDataset(benchmark, args.data_dir, args.domain, ids=ids)
    device = distributed.process_device(args.device)
    with as_stage_error():
        model = build_segmentation_model(args.architecture, args.backbone, num_classes=benchmark.num_classes + 1,
                                         mode=args.mode, use_gn=args.use_gn, pretrained="none")
    load_weights(model, paths.model(args.tag))
    model.to(device).eval()
    segmentation.predict_split(model, dataset, out_dir, parse_scales(args.scales), args.iteration, device,
                               palette=benchmark.palette() if args.domain == "test" else None,
                               num_workers=args.num_workers, amp=args.amp)
    print(f"predictions in {out_dir}")


if __name__ == "__main__":
    run_script(main, build_parser())
