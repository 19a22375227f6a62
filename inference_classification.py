"""Stage 1 inference: multi-scale, flip-fused CAMs of every image of a split (SPEC §6.2).

Writes experiments/predictions/{tag}@{train|val}@scale={scales}/{id}.npz (keys, cam, hr_cam);
images whose file exists are skipped, so a stopped run resumes. Under torchrun, or with
--shard i/n on several machines, each process takes its share of the images.
"""
import argparse

from torch.utils.data import DataLoader
from tqdm import tqdm

from core.backbones import BACKBONES, NORM_LAYERS
from core.cam import multiscale_cams
from core.classifier import Classifier
from tools import distributed
from tools.cli import add_amp_argument, add_shard_argument, parse_scales, require_tag, run_script, scales_type
from tools.datasets import ImageListDataset, single_item
from tools.experiment import WRITABLE_ADVICE, ExperimentPaths, cam_name
from tools.files import check_writable, find_maps, load_weights, save_cams
from tools.voc import read_image_ids


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=0, help="random seed (unused by inference; kept for the published command lines)")
    parser.add_argument("--num_workers", type=int, default=4, help="image loading worker processes")
    parser.add_argument("--data_dir", type=str, default="../VOCtrainval_11-May-2012/", help="VOC2012-format folder")
    parser.add_argument("--architecture", type=str, default="resnet50", choices=sorted(BACKBONES), help="backbone")
    parser.add_argument("--mode", type=str, default="normal", choices=sorted(NORM_LAYERS), help="batch norm mode")
    parser.add_argument("--tag", type=str, default="", help="the classifier's run name (experiments/models/{tag}.pth)")
    parser.add_argument("--domain", type=str, default="train", help="image list: train, train_aug, val, ...")
    parser.add_argument("--scales", type=scales_type, default="0.5,1.0,1.5,2.0", help="comma-separated image scales")
    parser.add_argument("--device", type=str, default=None,
                        help="torch device (default: cuda if available (cuda:LOCAL_RANK under torchrun), else cpu)")
    add_amp_argument(parser)
    add_shard_argument(parser)
    return parser


def main(args):
    require_tag(args)
    paths = ExperimentPaths()
    out_dir = paths.predictions(cam_name(args.tag, args.domain, args.scales))
    check_writable(out_dir, WRITABLE_ADVICE)
    ids = [image_id for image_id in distributed.share(read_image_ids(args.domain, args.data_dir), args.shard)
           if find_maps(out_dir, image_id) is None]
    dataset = ImageListDataset(args.data_dir, args.domain, ids=ids, with_labels=True)
    device = distributed.process_device(args.device)
    model = Classifier(args.architecture, mode=args.mode, pretrained="none")
    load_weights(model, paths.model(args.tag))
    model.to(device).eval()

    out_dir.mkdir(parents=True, exist_ok=True)
    loader = DataLoader(dataset, batch_size=1, num_workers=args.num_workers, collate_fn=single_item)
    scales = parse_scales(args.scales)
    for image_id, image, label in tqdm(loader, desc=out_dir.name, dynamic_ncols=True):
        keys, cam, hr_cam = multiscale_cams(model, image, label, scales, device, args.amp)
        save_cams(out_dir / f"{image_id}.npz", keys, cam, hr_cam)
    print(f"CAMs in {out_dir}")


if __name__ == "__main__":
    run_script(main, build_parser())
