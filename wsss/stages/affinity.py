"""Stage 2 with a network: AffinityNet training (docs/design.md §6.4) and the per-image random walk (§6.6).

`train_affinitynet.py` and `inference_rw.py` are thin wrappers over `train` and `random_walk_maps`.
"""
import math

import torch
import torch.nn.functional as F

from wsss.algorithms.affinity_labels import affinity_loss, affinity_pair_labels
from wsss.algorithms.path_index import PathIndex
from wsss.algorithms.random_walk import normalise_rw, random_walk
from wsss.data.dataset_registry import get_dataset
from wsss.data.datasets import LabelMapDataset, check_label_folder
from wsss.data.transforms import TrainTransform
from wsss.models.affinitynet import TRAINING_RADIUS, AffinityNet
from wsss.utils import distributed
from wsss.utils.cli import check_batch_size, require_tag
from wsss.utils.device import autocast
from wsss.utils.errors import StageError, as_stage_error
from wsss.utils.files import load_checkpoint, load_weights
from wsss.utils.optim import training_optimizer
from wsss.utils.paths import ExperimentPaths
from wsss.utils.training import fit, set_seed, start_run, training_loader


def train(args):
    require_tag(args)
    if not args.label_name:
        raise StageError("--label_name is required: the affinity-label folder under --pred_dir")
    if args.image_size % 4 or args.image_size // 4 < 2 * TRAINING_RADIUS:
        raise StageError(f"--image_size {args.image_size} must be a multiple of 4 and at least {8 * TRAINING_RADIUS}")
    ExperimentPaths().check_training_writable(args.tag)
    set_seed(args.seed)
    torch.autograd.set_detect_anomaly(args.detect_anomaly)
    device = distributed.setup(args.device)
    label_dir = ExperimentPaths(pred_dir=args.pred_dir).predictions(args.label_name)
    grid = args.image_size // 4
    dataset = LabelMapDataset(get_dataset(args.dataset), args.data_dir, "train_aug", TrainTransform(
        args.image_size, args.min_image_size, args.max_image_size, label_size=grid), label_dir=label_dir)
    check_label_folder(label_dir, dataset.ids, "affinity label", "make_affinity_labels.py")
    check_batch_size(len(dataset), args.batch_size)
    path_index = PathIndex(TRAINING_RADIUS, (grid, grid))
    with as_stage_error():
        model = AffinityNet(args.architecture, pretrained=args.pretrained, path_index=path_index).to(device)

    paths, log = start_run(args)
    loader = training_loader(dataset, args, device)
    groups = [{"params": model.trainable_parameters(), "lr": args.lr, "weight_decay": args.wd}]
    optimizer = training_optimizer(groups, args, len(loader))
    src_indices = path_index.src_indices.to(device)
    dst_indices = path_index.dst_indices.to(device)
    model = distributed.wrap_model(model, device)

    def step_losses(model, batch, iteration):
        images, labels = (tensor.to(device) for tensor in batch)
        _, affinities = model(images, with_affinity=True)
        loss, terms = affinity_loss(affinities, *affinity_pair_labels(labels, src_indices, dst_indices))
        return {"total": loss, **{f"{name}_loss": value for name, value in terms.items()}}

    return fit(args, model, loader, optimizer, step_losses, paths=paths, log=log)


def load_affinitynet(architecture, path):
    """An AffinityNet for inference from a checkpoint, its path-index buffers sized as saved
    (the training grid is image_size/4: 128 for the published 512)."""
    state = load_checkpoint(path)
    sources = state.get("path_indices_0", state.get("module.path_indices_0"))
    r = TRAINING_RADIUS
    if sources is None:  # not an AffinityNet checkpoint: any grid will do for load_weights to name the keys
        grid = 4 * r
    else:  # n_src = (g − r + 1)·(g − 2r + 2) on a g×g grid: solve for g
        count = sources.shape[-1]
        grid = round((3 * r - 3 + math.sqrt((r - 1) ** 2 + 4 * count)) / 2)
    with as_stage_error():
        model = AffinityNet(architecture, pretrained="none", path_index=PathIndex(r, (grid, grid)))
    return load_weights(model, path)


@torch.no_grad()
def random_walk_maps(model, image, cams, beta, exp_times, amp="off"):
    """The random walk of one image: rw maps (K−1)×h×w, upsampled ×4, cropped, divided by the
    global max (zero stays zero). image: normalised 3×h×w tensor; cams: strided CAMs (docs/design.md §6.2);
    `amp`: the precision of the network (the walk itself runs in float64). An image with no
    positive class (no CAM) gets an empty 0×h×w map (all background downstream)."""
    height, width = image.shape[1:]
    if cams.shape[0] == 0:
        return cams.new_zeros((0, height, width))
    with autocast(image.device, amp):
        edge = model.edge_map(image)
    walk = random_walk(cams.to(edge.device), edge, beta=beta, exp_times=exp_times)
    upsampled = F.interpolate(walk[None], scale_factor=4, mode="bilinear", align_corners=False)[0]
    return normalise_rw(upsampled[:, :height, :width])
