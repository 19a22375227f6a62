"""Time estimates for the whole Puzzle-CAM chain on MS COCO 2014, from measured per-image and
per-iteration figures of every stage at the published settings.

Run from the repository root:
    python -m bench.bench_coco_estimates --output bench/results/coco_estimates.md            # CPU
    python -m bench.bench_coco_estimates --device cuda --train_batch 8 --output gpu_coco.md  # one GPU

Each part runs in a process of its own (its peak memory is its own), with random weights
(`--pretrained none`: the timings do not depend on the values) and a synthetic 640×480 image (COCO's
most common size) holding three present classes (person, car, dog). Every part calls the functions
the stage scripts call, with the flags of the published command lines (docs/design.md §1.2) as the
runner passes them for COCO (`--dataset coco14`, 80 classes):
  cams                  inference_classification.py: the puzzle method's `image_cams` (scales
                        0.5,1.0,1.5,2.0 with flips) on a resnest101 classifier, and `save_cams`;
  affinity_labels       make_affinity_labels.py: `label_maps.label_one` with `make_affinity_label`
                        (fg 0.40, bg 0.10, the label CRF with 10 iterations), CAM file in, PNG out;
  random_walk           inference_rw.py: AffinityNet (resnest101) edge map and the sparse walk
                        (`random_walk_maps`, beta 10, exp_times 8), CAM file in, rw file out;
  pseudo_labels         make_pseudo_labels.py: `label_one` with `crf_refined_label` (threshold 0.35,
                        1 CRF iteration);
  segmentation_inference:B  inference_segmentation.py: `predict_probabilities` (the network, 4
                        scales with flips) and `write_prediction` (probability CRF, 10 iterations,
                        81 classes), DeepLabv3+ on backbone B; also the runner's train-set
                        predictions for its report (one scale, no CRF);
  evaluation            evaluate.py: `evaluate_folder` on one image: a CAM file (npy sweep, 15
                        thresholds), a random-walk file (rw sweep, 10) and a label PNG;
  classifier_step       one iteration of train_classification_with_puzzle.py (puzzle losses with
                        alpha 4, backward, the poly SGD step) and the per-epoch CAM evaluation's
                        forward pass of one 512×512 image;
  affinitynet_step      one iteration of train_affinitynet.py;
  segmentation_step:B   one iteration of train_segmentation.py (DeepLabv3+ on B, mode fix, GroupNorm)
                        and the per-epoch validation's forward pass of one 512×512 image.
Each per-image part runs `--warmup` times, then `--images` (CPU parts: `--cpu_images`) measured times on
the same image; each
training part `--warmup` steps, then `--steps` measured steps at batch `--train_batch` and a
`--crop`² crop. Reported: wall time, CPU time (user + system of all threads of the process,
time.process_time), peak resident memory (getrusage) and, on CUDA, peak allocated GPU memory.

The estimates multiply the measured per-image (per-iteration) figure by the COCO images (training
iterations) each stage processes. On a CPU they use the CPU time (the machine may be shared; CPU time
is the work, wall time also counts the waiting) divided by P processes of one thread each; on CUDA
the wall time divided by N GPUs for the network stages, and the CPU time divided by the machine's
cores for the stages that run on the CPU (the CRFs, the evaluation).
"""
import argparse
import collections
import copy
import datetime
import functools
import json
import os
import pathlib
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter

import inference_rw
import make_affinity_labels
import run_pipeline
import train_affinitynet
import train_classification_with_puzzle
import train_segmentation
from wsss.algorithms.affinity_labels import affinity_loss, affinity_pair_labels, make_affinity_label
from wsss.algorithms.cam import maps_to_label, resize_maps, strided_size
from wsss.algorithms.crf import crf_refined_label
from wsss.algorithms.path_index import PathIndex
from wsss.data.dataset_registry import get_dataset
from wsss.data.transforms import normalize
from wsss.data.voc import load_image
from wsss.methods import get_method
from wsss.methods.base import Schedule
from wsss.models.affinitynet import LABEL_GRID, TRAINING_RADIUS, AffinityNet
from wsss.models.backbones import parameter_groups
from wsss.models.segmentation_models import build_segmentation_model
from wsss.stages import label_maps
from wsss.stages.affinity import random_walk_maps
from wsss.stages.evaluation import evaluate_folder, sweep
from wsss.stages.map_kinds import MAP_KINDS
from wsss.stages.segmentation import predict_probabilities, segmentation_loss, write_prediction
from wsss.utils.cli import parse_scales
from wsss.utils.device import autocast
from wsss.utils.files import load_map_array, save_cams, save_label_png, save_rw, write_text
from wsss.utils.optim import build_groups, training_optimizer

DATASET = "coco14"
WIDTH, HEIGHT = 640, 480  # COCO's most common image size (and its usual long side)
CLASSES = (0, 2, 17)  # 0-based COCO class indices of the synthetic scene: person, car, dog
SCALES = (0.5, 1.0, 1.5, 2.0)
ARCHITECTURE = "resnest101"  # classifier and AffinityNet, as in the published command lines
AFFINITY_THRESHOLDS = (0.40, 0.10)  # fg, bg: the published command line and the runner
PSEUDO_THRESHOLD, PSEUDO_CRF = 0.35, 1  # the published command line and the runner
SEGMENTATION_CRF = 10  # inference_segmentation.py --iteration 10
COCO_IMAGES = {"train2014": 82783, "val2014": 40504}
# ResNeSt's split attention normalises pooled 1×1 maps: BatchNorm in training mode (the classifier's
# published --mode normal) needs two images or more; AffinityNet and DeepLabv3+ train in mode fix
MIN_TRAINING_BATCH_NORMAL = 2
PUBLISHED_CLASSIFIER_FLAGS = ["--architecture", ARCHITECTURE, "--re_loss_option", "masking", "--re_loss", "L1_Loss",
                              "--alpha_schedule", "0.50", "--alpha", "4.00"]
PER_IMAGE_PARTS = ("cams", "affinity_labels", "random_walk", "pseudo_labels", "segmentation_inference", "evaluation")
TRAINING_PARTS = ("classifier_step", "affinitynet_step", "segmentation_step")
BACKBONE_PARTS = ("segmentation_inference", "segmentation_step")  # one part per --seg_backbones entry


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", type=str, default=None,
                        help="run one part in this process and print its JSON (default: every part, each in a "
                             "process of its own, then the report); the parts are listed above")
    parser.add_argument("--device", type=str, default="cpu", help="torch device of the networks (cpu, cuda)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per part")
    parser.add_argument("--amp", type=str, default="off", choices=("off", "bf16", "fp16"),
                        help="autocast of the networks, as the stages' --amp (default float32, as published)")
    parser.add_argument("--seg_backbones", type=str, default="resnest269,resnest101",
                        help="DeepLabv3+ backbones to measure, comma-separated (train_segmentation.py's default "
                             "resnest269; the runner passes --architecture, resnest101)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured runs before the measured ones")
    parser.add_argument("--images", type=int, default=1, help="measured runs of each per-image network part")
    parser.add_argument("--cpu_images", type=int, default=3,
                        help="measured runs of each per-image CPU part (label CRFs, evaluation: seconds each)")
    parser.add_argument("--steps", type=int, default=1, help="measured iterations of each training part")
    parser.add_argument("--train_batch", type=int, default=1, help="batch size of the measured training iterations")
    parser.add_argument("--crop", type=int, default=512,
                        help="training crop (published 512; smaller ones are scaled up by pixels in the estimates)")
    parser.add_argument("--processes", type=str, default=None,
                        help="comma-separated P (CPU processes) or N (GPUs with --device cuda) of the estimates "
                             "(default: this machine's cores on CPU, 1,8 on CUDA)")
    parser.add_argument("--output", type=str, default=None, help="also write the report as markdown here")
    return parser


# ---------------------------------------------------------------- measuring


def peak_rss_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2  # Linux: kilobytes


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function, device):
    """(result, CPU seconds, wall seconds) of `function()`, device work included."""
    synchronize(device)
    cpu, wall = time.process_time(), time.perf_counter()
    result = function()
    synchronize(device)
    return result, time.process_time() - cpu, time.perf_counter() - wall


def repeat(function, device, warmup, count, before=None):
    """{"warmup": [...], "runs": [...]} of {"cpu_s", "wall_s"} (plus `function`'s result when it is a dict);
    `before()`, if given, runs untimed before each call."""
    records = {"warmup": [], "runs": []}
    for index in range(warmup + count):
        if before is not None:
            before()
        extra, cpu, wall = timed(function, device)
        extra = extra if isinstance(extra, dict) else {}
        records["warmup" if index < warmup else "runs"].append({"cpu_s": cpu, "wall_s": wall, **extra})
    return records


def memory_record(device, model_rss_gb):
    record = {"peak_rss_gb": peak_rss_gb(), "model_rss_gb": model_rss_gb}
    if device.type == "cuda":
        record["cuda_peak_gb"] = torch.cuda.max_memory_allocated(device) / 1024 ** 3
    return record


# ---------------------------------------------------------------- the synthetic image and its maps


def synthetic_scene():
    """(H×W×3 uint8 image, 3×H×W bool object masks): smooth noise with three coloured ellipses."""
    rng = np.random.RandomState(0)
    image = gaussian_filter(rng.rand(HEIGHT, WIDTH, 3), (6, 6, 0))
    image = (image - image.min()) / (image.max() - image.min())
    rows, cols = np.mgrid[:HEIGHT, :WIDTH]
    masks = []
    for (cy, cx, ry, rx), colour in zip(((0.45, 0.25, 0.30, 0.12), (0.65, 0.60, 0.20, 0.25), (0.30, 0.80, 0.15, 0.10)),
                                        ((0.9, 0.2, 0.2), (0.2, 0.3, 0.9), (0.8, 0.7, 0.2))):
        mask = ((rows - cy * HEIGHT) / (ry * HEIGHT)) ** 2 + ((cols - cx * WIDTH) / (rx * WIDTH)) ** 2 < 1
        image[mask] = 0.5 * image[mask] + 0.5 * np.array(colour)
        masks.append(mask)
    return (image * 255).astype(np.uint8), np.stack(masks)


def synthetic_maps(masks):
    """Smooth class maps in [0, 1] peaking on the objects: full size and strided (as a CAM file)."""
    maps = np.stack([gaussian_filter(mask.astype(np.float32), 25) for mask in masks])
    maps /= maps.max(axis=(1, 2), keepdims=True)
    strided = resize_maps(torch.from_numpy(maps), strided_size(HEIGHT, WIDTH)).numpy()
    return maps, strided


def class_map(masks):
    """H×W class ids (COCO ids: 0-based index + 1) of the scene."""
    label = np.zeros((HEIGHT, WIDTH), np.uint8)
    for mask, index in zip(masks, CLASSES):
        label[mask] = index + 1
    return label


def label_vector():
    label = np.zeros(get_dataset(DATASET).num_classes, np.float32)
    label[list(CLASSES)] = 1
    return label


KEYS = np.array([0] + [index + 1 for index in CLASSES], np.int64)
IMAGE_ID = "COCO_train2014_000000000001"


class SceneFolder:
    """The stages' image reader over one JPEG of the synthetic scene (decoded on every call, as a stage does)."""

    def __init__(self, folder):
        self.path = pathlib.Path(folder) / f"{IMAGE_ID}.jpg"
        image, masks = synthetic_scene()
        Image.fromarray(image).save(self.path, quality=95)
        self.masks = masks

    def image(self, image_id):
        return load_image(self.path)


# ---------------------------------------------------------------- per-image parts


def part_cams(args, device, work_dir, backbone=None):
    method = get_method("puzzle")
    model = method.build_model(argparse.Namespace(architecture=ARCHITECTURE, mode="normal"), "none",
                               get_dataset(DATASET).num_classes).to(device).eval()
    model_rss = peak_rss_gb()
    image = SceneFolder(work_dir).image(IMAGE_ID)
    label = label_vector()

    def one_image():
        keys, cam, hr_cam = method.image_cams(model, image, label, SCALES, device, args.amp)
        save_cams(work_dir / f"{IMAGE_ID}.npz", keys, cam, hr_cam)
    records = repeat(one_image, device, args.warmup, args.images)
    return {**records, **memory_record(device, model_rss)}


def label_stage(args, work_dir, kind, make_label):
    """label_maps.label_one (the label stages' per-image work) on the scene's synthetic map file."""
    data = SceneFolder(work_dir)
    maps, strided = synthetic_maps(data.masks)
    map_dir, out_dir = work_dir / "maps", work_dir / "labels"
    if kind.name == "cam":
        save_cams(map_dir / f"{IMAGE_ID}.npz", KEYS, strided, maps)
    else:
        save_rw(map_dir / f"{IMAGE_ID}.npz", KEYS, maps)
    work = functools.partial(label_maps.label_one, IMAGE_ID, data, get_dataset(DATASET).num_classes, map_dir, out_dir,
                             kind, make_label, False)
    cpu = torch.device("cpu")
    return {**repeat(work, cpu, args.warmup, args.cpu_images), **memory_record(cpu, None)}


def part_affinity_labels(args, device, work_dir, backbone=None):
    fg, bg = AFFINITY_THRESHOLDS
    make_label = functools.partial(make_affinity_label, fg_threshold=fg, bg_threshold=bg,
                                   crf_iteration=make_affinity_labels.LABEL_CRF_ITERATIONS)
    return label_stage(args, work_dir, MAP_KINDS["cam"], make_label)


def part_pseudo_labels(args, device, work_dir, backbone=None):
    make_label = functools.partial(crf_refined_label, threshold=PSEUDO_THRESHOLD, crf_iteration=PSEUDO_CRF)
    return label_stage(args, work_dir, MAP_KINDS["rw"], make_label)


def part_random_walk(args, device, work_dir, backbone=None):
    defaults = inference_rw.build_parser().parse_args([])
    model = AffinityNet(ARCHITECTURE, pretrained="none", path_index=PathIndex(TRAINING_RADIUS, LABEL_GRID))
    model = model.to(device).eval()
    model_rss = peak_rss_gb()
    data = SceneFolder(work_dir)
    maps, strided = synthetic_maps(data.masks)
    cam_dir, out_dir = work_dir / "cams", work_dir / "rw"
    save_cams(cam_dir / f"{IMAGE_ID}.npz", KEYS, strided, maps)
    num_classes = get_dataset(DATASET).num_classes

    def walk_one():  # inference_rw.py's work for one image
        image = data.image(IMAGE_ID)
        keys, cams = load_map_array(cam_dir, IMAGE_ID, "cam", strided_size(image.size[1], image.size[0]), num_classes)
        tensor = torch.from_numpy(normalize(image).transpose(2, 0, 1)).to(device)
        rw = random_walk_maps(model, tensor, torch.from_numpy(cams), defaults.beta, defaults.exp_times, args.amp)
        save_rw(out_dir / f"{IMAGE_ID}.npz", keys, rw.cpu().numpy())
    records = repeat(walk_one, device, args.warmup, args.images)
    tensor = torch.from_numpy(normalize(data.image(IMAGE_ID)).transpose(2, 0, 1)).to(device)

    def edges_only():
        with autocast(device, args.amp):
            model.edge_map(tensor)
    records["edge_map"] = repeat(edges_only, device, 0, 1)["runs"]
    return {**records, **memory_record(device, model_rss)}


def part_segmentation_inference(args, device, work_dir, backbone):
    model = build_segmentation_model("DeepLabv3+", backbone, num_classes=get_dataset(DATASET).num_classes + 1,
                                     mode="fix", use_gn=True, pretrained="none").to(device).eval()
    model_rss = peak_rss_gb()
    data = SceneFolder(work_dir)
    cpu = torch.device("cpu")
    network, crf = {"warmup": [], "runs": []}, {"warmup": [], "runs": []}
    image = data.image(IMAGE_ID)
    for index in range(args.warmup + args.images):
        probabilities, network_cpu, network_wall = timed(
            functools.partial(predict_probabilities, model, image, SCALES, device, args.amp), device)
        _, crf_cpu, crf_wall = timed(functools.partial(write_prediction, work_dir / f"{IMAGE_ID}.png", np.array(image),
                                                       probabilities, SEGMENTATION_CRF), cpu)
        phase = "warmup" if index < args.warmup else "runs"
        network[phase].append({"cpu_s": network_cpu, "wall_s": network_wall})
        crf[phase].append({"cpu_s": crf_cpu, "wall_s": crf_wall})
    # the runner's train-set predictions for its report: one scale, no CRF (scale 1.0 warmed up above)
    report_scales = parse_scales(run_pipeline.REPORT_SCALES)
    report = {"report_network": repeat(functools.partial(predict_probabilities, model, image, report_scales, device,
                                                         args.amp), device, 0, args.images),
              "report_write": repeat(functools.partial(write_prediction, work_dir / f"{IMAGE_ID}.png", np.array(image),
                                                       probabilities, 0), cpu, 0, args.images)}
    return {"network": network, "crf": crf, **report, **memory_record(device, model_rss)}


def mask_in(folder, image_id):
    return folder / f"{image_id}.png"


def part_evaluation(args, device, work_dir, backbone=None):
    data = SceneFolder(work_dir)
    maps, strided = synthetic_maps(data.masks)
    truth = class_map(data.masks)
    truth[:, :4] = 255  # a void border, as COCO's rendered masks have between objects
    save_label_png(work_dir / "mask" / f"{IMAGE_ID}.png", truth)
    folders = {"npy": work_dir / "cams", "rw": work_dir / "rw", "png": work_dir / "labels"}
    save_cams(folders["npy"] / f"{IMAGE_ID}.npz", KEYS, strided, maps)
    save_rw(folders["rw"] / f"{IMAGE_ID}.npz", KEYS, maps)
    save_label_png(folders["png"] / f"{IMAGE_ID}.png", maps_to_label(maps, KEYS, 0.25))
    thresholds = {"npy": sweep(0.05, 0.75), "rw": sweep(0.05, 0.50), "png": [None]}
    cpu = torch.device("cpu")
    result = {}
    for mode, folder in folders.items():  # evaluate.py's scoring of a one-image list, in this process
        mask_path = functools.partial(mask_in, work_dir / "mask")
        work = functools.partial(evaluate_folder, folder, mask_path, get_dataset(DATASET), [IMAGE_ID], mode,
                                 thresholds[mode], num_workers=1, progress=False)
        result[mode] = repeat(work, cpu, args.warmup, args.cpu_images)
    return {**result, **memory_record(cpu, None)}


# ---------------------------------------------------------------- training parts


def training_batch(crop, batch, device):
    """`batch` copies of the scene's normalised `crop`² crop (zero-padded) and its class map
    (255-padded), as the training transform leaves them."""
    image, masks = synthetic_scene()
    pixels = np.zeros((crop, crop, 3), np.float32)
    label = np.full((crop, crop), 255, np.uint8)
    rows, cols = min(crop, HEIGHT), min(crop, WIDTH)
    pixels[:rows, :cols] = normalize(image)[:rows, :cols]
    label[:rows, :cols] = class_map(masks)[:rows, :cols]
    images = torch.from_numpy(pixels.transpose(2, 0, 1)).repeat(batch, 1, 1, 1).to(device)
    labels = torch.from_numpy(label.astype(np.int64)).repeat(batch, 1, 1).to(device)
    return images, labels


def step_records(args, device, model, optimizer, step_losses):
    """fit()'s iteration (autocast around the losses, zero_grad, backward, step), timed. The weights are
    reset before each iteration (untimed): a step of lr 0.1 on random weights can make the next loss NaN."""
    initial = copy.deepcopy(model.state_dict())

    def iteration():
        with autocast(device, args.amp):
            losses = step_losses()
        optimizer.zero_grad()
        losses["total"].backward()
        optimizer.step()
        return {"loss": float(losses["total"].detach())}
    model.train()
    return repeat(iteration, device, args.warmup, args.steps, before=lambda: model.load_state_dict(initial))


def evaluation_forward(args, device, model, forward):
    """One 512² image through the per-epoch evaluation's forward pass (eval mode, no gradients)."""
    images = training_batch(args.crop, 1, device)[0]
    model.eval()

    @torch.no_grad()
    def run():
        forward(images)
    return repeat(run, device, args.warmup, args.steps)


def part_classifier_step(args, device, work_dir, backbone=None):
    options = train_classification_with_puzzle.build_parser().parse_args(
        PUBLISHED_CLASSIFIER_FLAGS + ["--dataset", DATASET, "--pretrained", "none", "--image_size", str(args.crop)])
    batch = max(args.train_batch, MIN_TRAINING_BATCH_NORMAL)
    method = get_method("puzzle")
    model = method.build_model(options, "none", get_dataset(DATASET).num_classes).to(device)
    model_rss = peak_rss_gb()
    optimizer = training_optimizer(build_groups(parameter_groups(model), options.lr, options.wd), options, 1000)
    images, _ = training_batch(args.crop, batch, device)
    labels = torch.from_numpy(label_vector()).repeat(batch, 1).to(device)
    schedule = Schedule(500, 1000, batch)  # mid-training: alpha at its full value
    records = step_records(args, device, model, optimizer,
                           lambda: method.step_losses(model, [images, labels], options, schedule))
    records["evaluation_forward"] = evaluation_forward(args, device, model,
                                                       lambda x: method.training_cams(model, x))["runs"]
    return {**records, "batch": batch, **memory_record(device, model_rss)}


def part_affinitynet_step(args, device, work_dir, backbone=None):
    options = train_affinitynet.build_parser().parse_args(["--architecture", ARCHITECTURE, "--pretrained", "none"])
    grid = args.crop // 4
    path_index = PathIndex(TRAINING_RADIUS, (grid, grid))
    model = AffinityNet(ARCHITECTURE, pretrained="none", path_index=path_index).to(device)
    model_rss = peak_rss_gb()
    optimizer = training_optimizer([{"params": model.trainable_parameters(), "lr": options.lr,
                                     "weight_decay": options.wd}], options, 1000)
    images, labels = training_batch(args.crop, args.train_batch, device)
    labels = labels[:, ::4, ::4]  # the label shrunk (nearest) to the edge map's grid
    sources, destinations = path_index.src_indices.to(device), path_index.dst_indices.to(device)

    def losses():
        _, affinities = model(images, with_affinity=True)
        loss, _ = affinity_loss(affinities, *affinity_pair_labels(labels, sources, destinations))
        return {"total": loss}
    records = step_records(args, device, model, optimizer, losses)
    return {**records, "batch": args.train_batch, **memory_record(device, model_rss)}


def part_segmentation_step(args, device, work_dir, backbone):
    options = train_segmentation.build_parser().parse_args(["--backbone", backbone, "--mode", "fix", "--use_gn", "True",
                                                            "--pretrained", "none"])
    model = build_segmentation_model(options.architecture, backbone, num_classes=get_dataset(DATASET).num_classes + 1,
                                     mode=options.mode, use_gn=options.use_gn, pretrained="none").to(device)
    model_rss = peak_rss_gb()
    optimizer = training_optimizer(build_groups(parameter_groups(model), options.lr, options.wd), options, 1000)
    images, labels = training_batch(args.crop, args.train_batch, device)
    records = step_records(args, device, model, optimizer,
                           lambda: {"total": segmentation_loss(model(images), labels)})
    records["evaluation_forward"] = evaluation_forward(args, device, model, lambda x: model(x).argmax(dim=1))["runs"]
    return {**records, "batch": args.train_batch, **memory_record(device, model_rss)}


PART_FUNCTIONS = {"cams": part_cams, "affinity_labels": part_affinity_labels, "random_walk": part_random_walk,
                  "pseudo_labels": part_pseudo_labels, "segmentation_inference": part_segmentation_inference,
                  "evaluation": part_evaluation, "classifier_step": part_classifier_step,
                  "affinitynet_step": part_affinitynet_step, "segmentation_step": part_segmentation_step}


def part_names(args):
    return part_names_of(PER_IMAGE_PARTS + TRAINING_PARTS, args)


def part_names_of(parts, args):
    names = []
    for part in parts:
        if part in BACKBONE_PARTS:
            names += [f"{part}:{backbone}" for backbone in backbones(args)]
        else:
            names.append(part)
    return names


def backbones(args):
    return [name.strip() for name in args.seg_backbones.split(",") if name.strip()]


def run_part(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    name, _, backbone = args.part.partition(":")
    if name not in PART_FUNCTIONS or (name in BACKBONE_PARTS) != bool(backbone):
        raise SystemExit(f"unknown part {args.part!r}; choose from {part_names(args)}")
    with tempfile.TemporaryDirectory(prefix="bench_coco_") as folder:
        return PART_FUNCTIONS[name](args, device, pathlib.Path(folder), backbone or None)


# ---------------------------------------------------------------- the report


def mean(records, key):
    return float(np.mean([record[key] for record in records])) if records else float("nan")


def seconds(value):
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


def duration(value):
    """Seconds as the most readable unit."""
    if value < 120:
        return f"{value:.0f} s"
    if value < 2 * 3600:
        return f"{value / 60:.0f} min"
    if value < 3 * 86400:
        return f"{value / 3600:.1f} h"
    return f"{value / 86400:.1f} days"


def gigabytes(value):
    return "" if value is None else f"{value:.2f} GB"


def measured_rows(args, results):
    """(part, what, records, memory source) for each line of the measured table."""
    rows = []
    crop = f"{args.crop}×{args.crop}"
    for name in part_names(args):
        result = results.get(name)
        part, _, backbone = name.partition(":")
        if result is None or "error" in result:
            rows.append((name, "failed: " + (result or {}).get("error", "not run"), None, None))
            continue
        if part == "cams":
            rows.append((name, "classifier resnest101, 4 scales × flip, fuse, write .npz", result, result))
        elif part == "affinity_labels":
            rows.append((name, "read CAMs, 2 × label CRF (10 it., 4 labels), write PNG", result, result))
        elif part == "random_walk":
            rows.append((name, "AffinityNet resnest101 edges + sparse walk (256 products), write .npz", result, result))
            rows.append((f"{name} (edge map alone)", "the network part of the line above", {"runs": result["edge_map"],
                                                                                            "warmup": []}, None))
        elif part == "pseudo_labels":
            rows.append((name, "read rw maps, label CRF (1 it.), write PNG", result, result))
        elif part == "segmentation_inference":
            rows.append((f"{name} network", f"DeepLabv3+ {backbone}, 4 scales × flip, softmax (81 classes)",
                         result["network"], result))
            rows.append((f"{name} CRF", "probability CRF (10 it., 81 classes), argmax, write PNG", result["crf"], None))
            what = f"the runner's train predictions: scale {run_pipeline.REPORT_SCALES} × flip, softmax"
            rows.append((f"{name} report network", what, result["report_network"], None))
            rows.append((f"{name} report write", "argmax, write PNG (no CRF)", result["report_write"], None))
        elif part == "evaluation":
            for mode, what in (("npy", "CAM file, 15 thresholds"), ("rw", "rw file, 10 thresholds"),
                               ("png", "label PNG")):
                rows.append((f"{name} {mode}", f"evaluate_folder, one image: {what}", result[mode],
                             result if mode == "npy" else None))
        elif part == "classifier_step":
            rows.append((name, f"puzzle iteration, resnest101, batch {result['batch']}, {crop}", result, result))
            rows.append((f"{name} (evaluation forward)", f"per-epoch CAM evaluation, one {crop} image",
                         {"runs": result["evaluation_forward"], "warmup": []}, None))
        elif part == "affinitynet_step":
            what = f"AffinityNet iteration, resnest101 (frozen), batch {result['batch']}, {crop}"
            rows.append((name, what, result, result))
        elif part == "segmentation_step":
            rows.append((name, f"DeepLabv3+ {backbone} iteration, batch {result['batch']}, {crop}", result, result))
            rows.append((f"{name} (evaluation forward)", f"per-epoch validation, one {crop} image",
                         {"runs": result["evaluation_forward"], "warmup": []}, None))
    return rows


def measured_table(args, results):
    cuda = args.device.startswith("cuda")
    lines = ["| part | what | wall | CPU (user+sys) | warm-up wall / CPU | peak RSS (model alone) |"
             + (" peak CUDA |" if cuda else ""),
             "|---|---|---|---|---|---|" + ("---|" if cuda else "")]
    for name, what, records, memory in measured_rows(args, results):
        if records is None:
            lines.append(f"| {name} | {what} | | | | |" + (" |" if cuda else ""))
            continue
        warm = records["warmup"]
        warm_text = f"{seconds(mean(warm, 'wall_s'))} / {seconds(mean(warm, 'cpu_s'))}" if warm else ""
        rss = ""
        if memory is not None:
            rss = gigabytes(memory["peak_rss_gb"])
            if memory.get("model_rss_gb") is not None:
                rss += f" ({gigabytes(memory['model_rss_gb'])})"
        line = (f"| {name} | {what} | {seconds(mean(records['runs'], 'wall_s'))} | "
                f"{seconds(mean(records['runs'], 'cpu_s'))} | {warm_text} | {rss} |")
        if cuda:
            line += f" {gigabytes(memory.get('cuda_peak_gb')) if memory else ''} |"
        lines.append(line)
    return lines


Estimate = collections.namedtuple("Estimate", "stage domain count unit part key on_cpu batch backbone")


def estimate_rows(args):
    """The lines of the estimates table, in the order the runner runs the stages. `part`/`key` name the
    measured records; `on_cpu`: the work runs on the CPU whatever the device; `batch`: the published batch
    of a training line (its iteration costs batch / measured batch × the measured one); `backbone`: the
    DeepLabv3+ backbone the line belongs to (None: every chain), "report" for the runner's extra
    train-set predictions (in no chain total)."""
    train, val = COCO_IMAGES["train2014"], COCO_IMAGES["val2014"]

    def trainer(part, title, module, flags, evaluation, backbone):
        options = module.build_parser().parse_args(flags)
        iterations_per_epoch = train // options.batch_size  # drop_last: whole batches only
        rows = [Estimate(f"{title} training: {options.max_epoch} epochs × {iterations_per_epoch:,} iterations of "
                         f"batch {options.batch_size}", "train_aug", options.max_epoch * iterations_per_epoch,
                         "iterations", part, None, False, options.batch_size, backbone)]
        if evaluation is not None:
            domain, count = evaluation
            rows.append(Estimate(f"{title} per-epoch evaluation: {options.max_epoch} × {count:,} images", domain,
                                 options.max_epoch * count, "images", part, "evaluation_forward", False, None,
                                 backbone))
        return rows

    def per_image(stage, part, key=None, on_cpu=False, domain="train_aug = train2014", count=train, backbone=None):
        return Estimate(stage, domain, count, "images", part, key, on_cpu, None, backbone)

    rows = trainer("classifier_step", "classifier (train_classification_with_puzzle.py)",
                   train_classification_with_puzzle, PUBLISHED_CLASSIFIER_FLAGS, ("train = train2014", train), None)
    rows += [per_image("CAMs (inference_classification.py)", "cams"),
             per_image("affinity labels (make_affinity_labels.py)", "affinity_labels", on_cpu=True)]
    rows += trainer("affinitynet_step", "AffinityNet (train_affinitynet.py)", train_affinitynet, [], None, None)
    rows += [per_image("random walk (inference_rw.py)", "random_walk"),
             per_image("pseudo labels (make_pseudo_labels.py)", "pseudo_labels", on_cpu=True)]
    for backbone in backbones(args):
        rows += trainer(f"segmentation_step:{backbone}", f"DeepLabv3+ {backbone} (train_segmentation.py)",
                        train_segmentation, ["--backbone", backbone], ("val = val2014", val), backbone)
        part = f"segmentation_inference:{backbone}"
        title = f"DeepLabv3+ {backbone} inference (inference_segmentation.py)"
        rows += [per_image(f"{title}: network", part, "network", False, "val = val2014", val, backbone),
                 per_image(f"{title}: CRF + write", part, "crf", True, "val = val2014", val, backbone)]
        report = (f"{title}, the runner's report column: scale {run_pipeline.REPORT_SCALES}", "train = train2014")
        rows += [per_image(f"{report[0]}, network", part, "report_network", False, report[1], train, "report"),
                 per_image(f"{report[0]}, write (no CRF)", part, "report_write", True, report[1], train, "report")]
    for mode, title, domain, count in (("npy", "CAM (npy sweep)", "train = train2014", train),
                                       ("rw", "CAM+RW (rw sweep)", "train = train2014", train),
                                       ("png", "CAM+RW+dCRF (png)", "train = train2014", train),
                                       ("png", "DeepLabv3+ (png)", "val = val2014", val)):
        rows.append(per_image(f"evaluate.py {title}", "evaluation", mode, True, domain, count))
    return rows


def processes(args):
    if args.processes:
        return [int(value) for value in args.processes.split(",")]
    return [1, 8] if args.device.startswith("cuda") else [os.cpu_count()]


def estimates_table(args, results):
    """The estimates table's lines: per stage the single-worker time and the time over each entry of
    --processes, then a chain total per DeepLabv3+ backbone."""
    cuda = args.device.startswith("cuda")
    counts = processes(args)
    cores = os.cpu_count()
    columns = " | ".join(f"N = {count} GPU{'s' if count > 1 else ''}" if cuda else f"P = {count}" for count in counts)
    worker = "GPU" if cuda else "process"
    header = f"| stage | list | COCO images / iterations | per image / published iteration | one {worker} | {columns} |"
    lines = [header, "|---|---|---|---|---|" + "---|" * len(counts)]
    chains = {backbone: [0.0] * (1 + len(counts)) for backbone in backbones(args)}  # one worker, then each count
    for row in estimate_rows(args):
        result = results.get(row.part)
        if result is None or "error" in result:
            lines.append(f"| {row.stage} | {row.domain} | {row.count:,} {row.unit} | failed | |"
                         + " |" * len(counts))
            continue
        records = result[row.key] if row.key else result
        records = records["runs"] if isinstance(records, dict) else records
        pixels = (512 / args.crop) ** 2 if row.part in part_names_of(TRAINING_PARTS, args) else 1  # approximation
        batches = row.batch / result["batch"] if row.batch else 1
        cpu_time = row.on_cpu or not cuda  # the CPU stages' work, and every stage of a CPU run
        measured = mean(records, "cpu_s" if cpu_time else "wall_s")
        each = measured * pixels * batches
        total = each * row.count
        divisors = [cores] * len(counts) if cuda and row.on_cpu else counts
        note = f" (CPU, {cores} processes)" if cuda and row.on_cpu else ""
        basis = f"{seconds(each)} {'CPU' if cpu_time else 'wall'}"
        if row.batch:
            basis += f" ({seconds(measured)} at batch {result['batch']} × {batches:g})"
        if pixels != 1:
            basis += f" (× {pixels:g} for the crop)"
        cells = " | ".join(duration(total / divisor) + note for divisor in divisors)
        lines.append(f"| {row.stage} | {row.domain} | {row.count:,} {row.unit} | "
                     f"{basis} | {duration(total)} | {cells} |")
        for backbone, sums in chains.items():
            if row.backbone in (None, backbone):
                for index, divisor in enumerate([1] + divisors):
                    sums[index] += total / divisor
    for backbone, sums in chains.items():
        lines.append(f"| **whole chain, DeepLabv3+ {backbone}** (without the runner's train-set predictions) | | | | "
                     + " | ".join(f"**{duration(value)}**" for value in sums) + " |")
    return lines


def machine_line(args):
    model = platform.processor() or platform.machine()
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    line = (f"Machine: {model}, {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} torch thread(s) "
            f"per part, numpy {np.__version__}, Python {platform.python_version()}.")
    if args.device.startswith("cuda") and torch.cuda.is_available():
        line += f" GPU: {torch.cuda.get_device_name(torch.device(args.device))}."
    return line


def command_line(args):
    flags = [f"--device {args.device}", f"--threads {args.threads}", f"--seg_backbones {args.seg_backbones}",
             f"--warmup {args.warmup}", f"--images {args.images}", f"--cpu_images {args.cpu_images}",
             f"--steps {args.steps}",
             f"--train_batch {args.train_batch}", f"--crop {args.crop}"]
    if args.amp != "off":
        flags.append(f"--amp {args.amp}")
    if args.processes:
        flags.append(f"--processes {args.processes}")
    if args.output:
        flags.append(f"--output {args.output}")
    return "python -m bench.bench_coco_estimates " + " ".join(flags)


GPU_FORMULA = """\
## GPU

{availability} On a machine with a GPU the same script measures them:

    python -m bench.bench_coco_estimates --device cuda --train_batch 8 --processes 1,4,8 --output gpu_coco.md

Its tables then hold that GPU's per-image and per-iteration wall times and these estimates:

- per-image network stages (CAMs, random walk, the network of segmentation inference):
  per-image GPU time × images / N GPUs; each stage splits its list over the GPUs under
  `torchrun --nproc_per_node N`, and over machines with `--shard i/n`;
- training: per-iteration GPU time at the published batch 32 × iterations / N, with
  DistributedDataParallel over N GPUs (torchrun; `--batch_size` stays the global batch, so the
  iteration count does not change and each GPU computes 32/N images per iteration). Measuring with
  `--train_batch` = 32/N (8 on 4 GPUs) gives the per-GPU iteration time directly; the table scales
  any measured batch to 32 by images;
- the stages that run on the CPU whatever the device (affinity labels, pseudo labels, the
  probability CRF of segmentation inference, evaluation): per-image CPU time × images / CPU
  processes (`--num_workers`, `--shard`). During segmentation inference the 81-class CRF runs in
  `--num_workers` processes beside the network and can take longer than it.
"""


def report(args, results, load_before, load_after):
    cuda = args.device.startswith("cuda")
    basis = ("wall time on the GPU for the network stages, CPU time for the CPU stages" if cuda else
             "CPU time (user + system): the machine is shared with other jobs, so the wall time also counts waiting")
    lines = [
        "# Time estimates on MS COCO 2014, from measured per-image and per-iteration figures",
        "",
        f"Date: {datetime.date.today()}. {machine_line(args)}",
        (f"Load average (1, 5, 15 min): {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f} before, "
         f"{load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f} after."),
        f"Command: `{command_line(args)}`",
        "",
        (f"Random weights; a synthetic {WIDTH}×{HEIGHT} image (COCO's most common size) with 3 present classes; the "
         "published settings (docs/design.md §1.2) with COCO's 80 classes. Each part runs in a process of its own "
         f"after {args.warmup} warm-up run(s); the figures are the mean of {args.images} measured image(s) "
         f"({args.cpu_images} for the CPU parts) / {args.steps} iteration(s). Peak RSS is the part's process "
         "(model, activations, gradients); the value in brackets is right after building the model."),
        "",
        "## Measured",
        "",
        *measured_table(args, results),
        "",
        "## Estimates for COCO 2014",
        "",
        f"Basis: {basis}. Images: train2014 {COCO_IMAGES['train2014']:,}, val2014 {COCO_IMAGES['val2014']:,}; the "
        "runner's lists: CAMs, affinity labels, random walk and pseudo labels on train_aug (= train2014), "
        "segmentation inference on val (= val2014; the runner also predicts train for its report), the evaluations "
        "of Table 2. Training: iterations = epochs × ⌊82,783 / batch⌋ with the scripts' published epochs and "
        "batch sizes, each costing the published batch / the measured batch × the measured iteration (measured at "
        f"batch {args.train_batch}, the classifier at {max(args.train_batch, MIN_TRAINING_BATCH_NORMAL)} at least: its "
        "ResNeSt BatchNorm in training mode needs two images; time linear in the batch, as on a CPU). On a shared "
        "machine the CPU time of the same work varies too (other jobs compete for caches and memory bandwidth): "
        "compare the warm-up and measured columns. "
        "The columns divide by the number of "
        + ("GPUs (network stages) or CPU cores (CPU stages): ideal scaling." if cuda else
           "processes, one thread each on its own core: ideal scaling, the same per-image CPU time everywhere."),
        "",
        *estimates_table(args, results),
        "",
    ]
    if args.crop != 512:
        lines += [(f"The training parts ran at a {args.crop}² crop and are scaled to the published 512² by pixels "
                   f"(×{(512 / args.crop) ** 2:g}): an approximation."), ""]
    availability = ("This report was measured on the GPU named above." if cuda else
                    "No GPU was available in this session: there are no GPU figures here, and none are estimated.")
    lines.append(GPU_FORMULA.format(availability=availability))
    return "\n".join(lines)


def child_command(args, part):
    return [sys.executable, "-m", "bench.bench_coco_estimates", "--part", part, "--device", args.device,
            "--threads", str(args.threads), "--amp", args.amp, "--seg_backbones", args.seg_backbones,
            "--warmup", str(args.warmup), "--images", str(args.images), "--cpu_images", str(args.cpu_images),
            "--steps", str(args.steps),
            "--train_batch", str(args.train_batch), "--crop", str(args.crop)]


def main(args):
    if args.part is not None:
        print(json.dumps(run_part(args)))
        return
    load_before = os.getloadavg()
    results = {}
    for part in part_names(args):
        started = time.perf_counter()
        finished = subprocess.run(child_command(args, part), check=False, capture_output=True, text=True)
        if finished.returncode == 0:
            results[part] = json.loads(finished.stdout.strip().splitlines()[-1])
        else:
            last = (finished.stderr.strip().splitlines() or [f"exit status {finished.returncode}"])[-1]
            results[part] = {"error": last}
        print(f"{part} ({time.perf_counter() - started:.0f} s): {json.dumps(results[part])}", flush=True)
    text = report(args, results, load_before, os.getloadavg())
    print(text)
    if args.output:
        write_text(args.output, text)


if __name__ == "__main__":
    main(build_parser().parse_args())
