"""Stage 2c: random walk of the CAMs with AffinityNet's affinities.

Writes {pred_dir}/{model_name}@{train|val}@beta={beta}@exp_times={exp_times}@rw/{id}.npz
(keys, rw). An image whose CAMs are all zero keeps an all-zero map (the published code wrote NaN).
Under torchrun, or with --shard i/n on several machines, each process takes its share of the images.
"""
import argparse

import torch

from wsss.algorithms.cam import strided_size
from wsss.data.dataset_registry import add_dataset_argument, get_dataset
from wsss.data.datasets import ImageListDataset
from wsss.data.transforms import normalize
from wsss.models.backbones import BACKBONES
from wsss.stages.affinity import load_affinitynet, random_walk_maps
from wsss.stages.map_kinds import MAP_KINDS
from wsss.utils import distributed
from wsss.utils.cli import HelpFormatter, add_domain_argument, add_model_stage_arguments, run_script, str2bool
from wsss.utils.errors import StageError
from wsss.utils.files import MAP_SUFFIXES, check_map_files, load_map_array, save_rw
from wsss.utils.paths import ExperimentPaths, rw_name
from wsss.utils.per_image import plan_outputs, run_over_loader

CAM = MAP_KINDS["cam"]


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--architecture", type=str, default="resnet50", choices=sorted(BACKBONES), help="backbone")
    parser.add_argument("--model_name", type=str, default="", help="the AffinityNet's tag (experiments/models/{tag}.pth)")
    parser.add_argument("--cam_dir", type=str, default="", help="the CAM folder under --pred_dir")
    add_domain_argument(parser, "train")
    parser.add_argument("--beta", type=int, default=10, help="affinity exponent")
    parser.add_argument("--exp_times", type=int, default=8, help="the walk takes 2^exp_times steps")
    parser.add_argument("--data_dir", type=str, default="../VOCtrainval_11-May-2012/", help="dataset folder (--dataset's layout)")
    add_dataset_argument(parser)
    parser.add_argument("--pred_dir", type=str, default="./experiments/predictions/", help="where prediction folders are")
    parser.add_argument("--num_workers", type=int, default=4, help="image loading worker processes")
    add_model_stage_arguments(parser)
    parser.add_argument("--allow_pickle", type=str2bool, default=False,
                        help="read published pickled .npy CAM files (unpickling can run code: trusted files only)")
    return parser


def main(args):
    if not args.model_name:
        raise StageError("--model_name is required: the AffinityNet's run name (experiments/models/{tag}.pth)")
    paths = ExperimentPaths(pred_dir=args.pred_dir)
    cam_dir = paths.predictions(args.cam_dir)
    if not args.cam_dir or not cam_dir.is_dir():
        raise StageError(f"{cam_dir}: CAM folder not found; run {CAM.producer} first or check --cam_dir")
    out_dir = paths.predictions(rw_name(args.model_name, args.domain, args.beta, args.exp_times))
    benchmark = get_dataset(args.dataset)
    ids = plan_outputs(out_dir, benchmark.image_ids(args.domain, args.data_dir), args.shard, MAP_SUFFIXES)
    dataset = ImageListDataset(benchmark, args.data_dir, args.domain, ids=ids)
    check_map_files(cam_dir, ids, CAM.noun, CAM.producer)
    device = distributed.process_device(args.device)
    model = load_affinitynet(args.architecture, paths.model(args.model_name)).to(device).eval()

    def walk_one(image_id, image):
        keys, cams = load_map_array(cam_dir, image_id, "cam", strided_size(image.size[1], image.size[0]),
                                    benchmark.num_classes, args.allow_pickle)
        tensor = torch.from_numpy(normalize(image).transpose(2, 0, 1)).to(device)
        rw = random_walk_maps(model, tensor, torch.from_numpy(cams), args.beta, args.exp_times, args.amp)
        save_rw(out_dir / f"{image_id}.npz", keys, rw.cpu().numpy())

    run_over_loader(dataset, walk_one, out_dir, args.num_workers)
    print(f"random-walk maps in {out_dir}")


if __name__ == "__main__":
    run_script(main, build_parser())
