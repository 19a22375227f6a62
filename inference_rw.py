"""Stage 2c: random walk of the CAMs with AffinityNet's affinities (SPEC §6.6).

Writes experiments/predictions/{model_name}@{train|val}@beta={beta}@exp_times={exp_times}@rw/{id}.npz
(keys, rw). An image whose CAMs are all zero keeps an all-zero map (the published code wrote NaN).
Under torchrun, or with --shard i/n on several machines, each process takes its share of the images.
"""
import argparse
import pathlib

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from core.affinity import load_affinitynet, random_walk_maps
from core.backbones import BACKBONES
from core.cam import strided_size
from tools import distributed
from tools.cli import StageError, add_amp_argument, add_shard_argument, require_tag, run_script, str2bool
from tools.datasets import ImageListDataset, single_item
from tools.experiment import ExperimentPaths, rw_name
from tools.files import check_map_files, check_writable, find_maps, load_map_array, save_rw
from tools.transforms import normalize
from tools.voc import read_image_ids


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--architecture", type=str, default="resnet50", choices=sorted(BACKBONES), help="backbone")
    parser.add_argument("--model_name", type=str, default="", help="the AffinityNet's tag (experiments/models/{tag}.pth)")
    parser.add_argument("--cam_dir", type=str, default="", help="the CAM folder under --pred_dir")
    parser.add_argument("--domain", type=str, default="train", help="image list")
    parser.add_argument("--beta", type=int, default=10, help="affinity exponent")
    parser.add_argument("--exp_times", type=int, default=8, help="the walk takes 2^exp_times steps")
    parser.add_argument("--data_dir", type=str, default="../VOCtrainval_11-May-2012/", help="VOC2012-format folder")
    parser.add_argument("--pred_dir", type=str, default="./experiments/predictions/", help="where prediction folders are")
    parser.add_argument("--num_workers", type=int, default=4, help="image loading worker processes")
    parser.add_argument("--device", type=str, default=None,
                        help="torch device (default: cuda if available (cuda:LOCAL_RANK under torchrun), else cpu)")
    add_amp_argument(parser)
    add_shard_argument(parser)
    parser.add_argument("--allow_pickle", type=str2bool, default=False,
                        help="read published pickled .npy CAM files (unpickling can run code: trusted files only)")
    return parser


def main(args):
    args.tag = args.model_name
    require_tag(args)
    cam_dir = pathlib.Path(args.pred_dir) / args.cam_dir
    if not args.cam_dir or not cam_dir.is_dir():
        raise StageError(f"{cam_dir}: CAM folder not found; run inference_classification.py first or check --cam_dir")
    out_dir = pathlib.Path(args.pred_dir) / rw_name(args.model_name, args.domain, args.beta, args.exp_times)
    check_writable(out_dir, "make it writable or pass another --pred_dir")
    ids = [image_id for image_id in distributed.share(read_image_ids(args.domain, args.data_dir), args.shard)
           if find_maps(out_dir, image_id) is None]
    dataset = ImageListDataset(args.data_dir, args.domain, ids=ids)
    check_map_files(cam_dir, ids, "CAM", "inference_classification.py")
    device = distributed.process_device(args.device)
    model = load_affinitynet(args.architecture, ExperimentPaths().model(args.model_name)).to(device).eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    loader = DataLoader(dataset, batch_size=1, num_workers=args.num_workers, collate_fn=single_item)
    for image_id, image in tqdm(loader, desc=out_dir.name, dynamic_ncols=True):
        keys, cams = load_map_array(cam_dir, image_id, "cam", strided_size(image.size[1], image.size[0]),
                                    args.allow_pickle)
        tensor = torch.from_numpy(normalize(image).transpose(2, 0, 1)).to(device)
        rw = random_walk_maps(model, tensor, torch.from_numpy(cams), args.beta, args.exp_times, args.amp)
        save_rw(out_dir / f"{image_id}.npz", keys, rw.cpu().numpy())
    print(f"random-walk maps in {out_dir}")


if __name__ == "__main__":
    run_script(main, build_parser())
