"""Stage 1 inference: multi-scale, flip-fused CAMs of every image of a split.

Writes experiments/predictions/{tag}@{train|val}@scale={scales}/{id}.npz (keys, cam, hr_cam);
images whose file exists are skipped, so a stopped run resumes. Under torchrun, or with
--shard i/n on several machines, each process takes its share of the images.
"""
import argparse

from wsss.data.dataset_registry import add_dataset_argument, get_dataset
from wsss.data.datasets import ImageListDataset
from wsss.methods import METHODS, get_method
from wsss.models.backbones import BACKBONES, NORM_LAYERS
from wsss.utils import distributed
from wsss.utils.cli import (
    HelpFormatter,
    add_domain_argument,
    add_model_stage_arguments,
    parse_scales,
    require_tag,
    run_script,
    scales_type,
)
from wsss.utils.errors import as_stage_error
from wsss.utils.files import MAP_SUFFIXES, load_weights, save_cams
from wsss.utils.paths import WRITABLE_ADVICE, ExperimentPaths, cam_name
from wsss.utils.per_image import plan_outputs, run_over_loader


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="random seed (unused by inference; kept for the published command lines)")
    parser.add_argument("--num_workers", type=int, default=4, help="image loading worker processes")
    parser.add_argument("--data_dir", type=str, default="../VOCtrainval_11-May-2012/", help="dataset folder (--dataset's layout)")
    add_dataset_argument(parser)
    parser.add_argument("--architecture", type=str, default="resnet50", choices=sorted(BACKBONES), help="backbone")
    parser.add_argument("--mode", type=str, default="normal", choices=sorted(NORM_LAYERS), help="batch norm mode")
    parser.add_argument("--tag", type=str, default="", help="the classifier's run name (experiments/models/{tag}.pth)")
    add_domain_argument(parser, "train")
    parser.add_argument("--scales", type=scales_type, default="0.5,1.0,1.5,2.0", help="comma-separated image scales")
    parser.add_argument("--method", type=str, default="puzzle", choices=sorted(METHODS),
                        help="the CAM method the classifier was trained with (its network and CAM routine)")
    add_model_stage_arguments(parser)
    return parser


def main(args):
    require_tag(args)
    method = get_method(args.method)
    paths = ExperimentPaths()
    out_dir = paths.predictions(cam_name(args.tag, args.domain, args.scales))
    benchmark = get_dataset(args.dataset)
    ids = plan_outputs(out_dir, benchmark.image_ids(args.domain, args.data_dir), args.shard, MAP_SUFFIXES, WRITABLE_ADVICE)
    dataset = ImageListDataset(benchmark, args.data_dir, args.domain, ids=ids, with_labels=True)
    device = distributed.process_device(args.device)
    with as_stage_error():
        model = method.build_model(args, "none", benchmark.num_classes)
    load_weights(model, paths.model(args.tag))
    model.to(device).eval()
    scales = parse_scales(args.scales)

    def cams_of(image_id, image, label):
        keys, cam, hr_cam = method.image_cams(model, image, label, scales, device, args.amp)
        save_cams(out_dir / f"{image_id}.npz", keys, cam, hr_cam)

    run_over_loader(dataset, cams_of, out_dir, args.num_workers)
    print(f"CAMs in {out_dir}")


if __name__ == "__main__":
    run_script(main, build_parser())
