"""GPU benchmarks of the shared paths, written as one markdown report (scripts/gpu_check.sh writes
bench/results/gpu.md with it). Run from the repository root:

    python -m bench.bench_gpu --output bench/results/gpu.md              # on a CUDA GPU, about 2 minutes
    python -m bench.bench_gpu --dry_run --device cpu --output /tmp/gpu.md  # tiny sizes, seconds

Measured, each on the named device (cuda = the first visible GPU):
1. random walk at 94×125 (a 500×375 image) and 47×63: the sparse walk (float64 CSR products) against
   the published dense squaring (float32), time, peak CUDA memory and max difference, with
   bench/bench_random_walk.py's measurement;
2. CAM inference: images/s of `multiscale_cams` at the published scales 0.5,1.0,1.5,2.0 with
   flips, on 500×375 images, float32 and `--amp bf16`;
3. classifier training: iterations/s of the Puzzle-CAM step (the method registry's losses, the
   published optimiser groups) at the published batch per GPU (32 over 4 GPUs: 8) and 512×512
   crops, float32 and bf16 autocast, each with and without channels-last;
4. DeepLabv3+ inference: images/s of `predict_probabilities` at the same scales, float32 and bf16.

The networks have random weights (`--pretrained none`: nothing to download; speed does not depend
on the values) and the inputs are random images already in memory: reading and decoding files is
not part of any number, the per-image resizing and normalisation of inference (on the CPU, as in
the stages) is. `--dry_run` runs every measurement with tiny sizes and the small backbone, on any
device, to check this script; its numbers say nothing about a GPU.
"""
import argparse
import dataclasses
import datetime
import pathlib
import platform
import sys
import time

import numpy as np
import torch
from PIL import Image

from bench import bench_random_walk
from wsss.methods import get_method
from wsss.methods.base import Schedule
from wsss.models.backbones import BACKBONES, parameter_groups
from wsss.models.deeplab import DeepLabv3Plus
from wsss.stages.segmentation import predict_probabilities
from wsss.utils.cli import add_training_arguments
from wsss.utils.device import autocast
from wsss.utils.files import write_text
from wsss.utils.optim import build_groups, training_optimizer

RESULT = pathlib.Path(__file__).resolve().parent / "results" / "gpu.md"
SCALES = (0.5, 1.0, 1.5, 2.0)


@dataclasses.dataclass(frozen=True)
class Sizes:
    walk_grids: tuple  # (h, w) strided grids; the dense walk runs on each
    image_size: tuple  # (height, width) of the inference images
    inference_images: int  # timed images per inference measurement (after the warm-up ones)
    train_batch: int
    train_crop: int
    train_iterations: int  # timed, after `warmup` untimed ones
    warmup: int


FULL = Sizes(walk_grids=((47, 63), (94, 125)), image_size=(375, 500), inference_images=16, train_batch=8,
             train_crop=512, train_iterations=10, warmup=3)
TINY = Sizes(walk_grids=((12, 16),), image_size=(40, 56), inference_images=2, train_batch=2, train_crop=64,
             train_iterations=2, warmup=1)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", type=torch.device, default=torch.device("cuda"), help="cuda (the first GPU) or cpu")
    parser.add_argument("--architecture", type=str, default=None, choices=sorted(BACKBONES),
                        help="backbone of the classifier and DeepLabv3+ (default: resnest101 as published; "
                             "resnet_mini with --dry_run)")
    parser.add_argument("--train_batch", type=int, default=None,
                        help="classifier training batch (default: 8, the published 32 over 4 GPUs; lower it on a "
                             "GPU with little memory)")
    parser.add_argument("--dry_run", action="store_true", help="tiny sizes and the small backbone, any device")
    parser.add_argument("--checks", type=str, default=None,
                        help="file of tab-separated `step, status, seconds` lines: the checks run before "
                             "(scripts/gpu_check.sh)")
    parser.add_argument("--output", type=str, default=str(RESULT),
                        help="markdown report (default: bench/results/gpu.md)")
    return parser


def synchronize(device):
    bench_random_walk.synchronize(device)


def device_name(device):
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        return f"{properties.name} ({properties.total_memory / 2 ** 30:.0f} GiB)"
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def random_images(count, size, seed=0):
    """(PIL image, 20-class multi-hot label) pairs: noise over a colour ramp, 1 to 3 classes each."""
    rng = np.random.default_rng(seed)
    height, width = size
    pairs = []
    for _ in range(count):
        ramp = np.linspace(0, 255, width)[None, :, None] * rng.random(3)
        pixels = np.clip(ramp + rng.normal(0, 40, (height, width, 3)), 0, 255).astype(np.uint8)
        label = np.zeros(20, np.float32)
        label[rng.choice(20, size=rng.integers(1, 4), replace=False)] = 1
        pairs.append((Image.fromarray(pixels), label))
    return pairs


def images_per_second(work, pairs, warmup, device):
    """Run `work(image, label)` on the warm-up pairs, then time it over the rest."""
    for image, label in pairs[:warmup]:
        work(image, label)
    synchronize(device)
    start = time.perf_counter()
    for image, label in pairs[warmup:]:
        work(image, label)
    synchronize(device)
    return (len(pairs) - warmup) / (time.perf_counter() - start)


def random_walk_rows(sizes, device):
    args = bench_random_walk.build_parser().parse_args(["--sparse_repeats", "3"])
    rows = [bench_random_walk.table_header(device), "|" + "---|" * 9]
    for grid in sizes.walk_grids:
        walks = [bench_random_walk.measure_walk(method, grid, args, device, repeats)
                 for method, repeats in (("sparse", args.sparse_repeats), ("dense", 1))]
        rows.append(bench_random_walk.table_row(grid, *walks, device))
        print(rows[-1], flush=True)
    return rows


def classifier_args(architecture, crop):
    method = get_method("puzzle")
    parser = argparse.ArgumentParser()
    add_training_arguments(parser)
    method.add_arguments(parser)
    args = parser.parse_args(["--architecture", architecture, "--pretrained", "none", "--image_size", str(crop),
                              "--alpha", "4", "--max_epoch", "1"])
    return method, args


@torch.no_grad()
def cam_inference_rows(sizes, architecture, device):
    method, args = classifier_args(architecture, sizes.train_crop)
    model = method.build_model(args, "none", 20).to(device).eval()
    pairs = random_images(sizes.warmup + sizes.inference_images, sizes.image_size)
    rows = ["| precision | images/s | device |", "|---|---|---|"]
    for amp in ("off", "bf16"):
        speed = images_per_second(lambda image, label: method.image_cams(model, image, label, SCALES, device, amp),
                                  pairs, sizes.warmup, device)
        rows.append(f"| {'float32' if amp == 'off' else 'bf16 autocast'} | {speed:.2f} | {device_name(device)} |")
        print(rows[-1], flush=True)
    return rows


def training_speed(method, args, images, labels, sizes, device, amp, channels_last):
    """Iterations/s of the puzzle step (forward of the batch and of its pieces, losses, backward,
    SGD) and the peak CUDA memory in bytes (None on the CPU)."""
    torch.manual_seed(0)
    model = method.build_model(args, "none", 20).to(device).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    total = sizes.warmup + sizes.train_iterations
    optimizer = training_optimizer(build_groups(parameter_groups(model), args.lr, args.wd), args, total)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for iteration in range(total):
        if iteration == sizes.warmup:
            synchronize(device)
            start = time.perf_counter()
        with autocast(device, amp):
            losses = method.step_losses(model, (images, labels), args, Schedule(iteration, total, len(images)))
        optimizer.zero_grad()
        losses["total"].backward()
        optimizer.step()
    synchronize(device)
    speed = sizes.train_iterations / (time.perf_counter() - start)
    return speed, torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def training_rows(sizes, architecture, batch, device):
    method, args = classifier_args(architecture, sizes.train_crop)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, sizes.train_crop, sizes.train_crop, generator=generator).to(device)
    labels = (torch.rand(batch, 20, generator=generator) < 0.15).float().to(device)
    rows = ["| precision | memory format | iterations/s | images/s | peak CUDA memory | device |",
            "|---|---|---|---|---|---|"]
    for amp in ("off", "bf16"):
        for channels_last in (False, True):
            cells = ["float32" if amp == "off" else "bf16 autocast", "channels-last" if channels_last else "contiguous"]
            try:
                speed, memory = training_speed(method, args, images, labels, sizes, device, amp, channels_last)
                memory = "—" if memory is None else f"{memory / 2 ** 30:.1f} GiB"
                cells += [f"{speed:.2f}", f"{speed * batch:.1f}", memory]
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                cells += [f"out of memory at batch {batch} (lower --train_batch)", "—", "—"]
            rows.append("| " + " | ".join(cells + [device_name(device)]) + " |")
            print(rows[-1], flush=True)
    return rows


def segmentation_rows(sizes, architecture, device):
    torch.manual_seed(0)
    model = DeepLabv3Plus(architecture, num_classes=21, mode="fix", use_gn=True, pretrained="none").to(device).eval()
    pairs = random_images(sizes.warmup + sizes.inference_images, sizes.image_size, seed=1)
    rows = ["| precision | images/s | device |", "|---|---|---|"]
    for amp in ("off", "bf16"):
        speed = images_per_second(lambda image, label: predict_probabilities(model, image, SCALES, device, amp),
                                  pairs, sizes.warmup, device)
        rows.append(f"| {'float32' if amp == 'off' else 'bf16 autocast'} | {speed:.2f} | {device_name(device)} |")
        print(rows[-1], flush=True)
    return rows


def checks_rows(path):
    """The checks table from gpu_check.sh's `step<TAB>status<TAB>seconds` lines."""
    rows = ["| check | result | seconds |", "|---|---|---|"]
    for line in pathlib.Path(path).read_text().splitlines():
        if line.strip():
            step, status, seconds = line.split("\t")
            rows.append(f"| {step} | {status} | {float(seconds):.0f} |")
    return rows


def environment(device):
    lines = [f"torch {torch.__version__}, Python {platform.python_version()}"]
    if device.type == "cuda":
        lines[0] += (f", CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
                     f"{torch.cuda.device_count()} visible GPU(s): "
                     + "; ".join(torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())))
    return lines[0]


def main(args):
    if not args.dry_run and args.device.type != "cuda":
        sys.exit("error: the full-size benchmarks are meant for a CUDA device; add --dry_run for a quick check")
    if args.dry_run and pathlib.Path(args.output).resolve() == RESULT.resolve():
        sys.exit("error: bench/results/gpu.md holds real GPU measurements only; give the dry run another --output")
    sizes = TINY if args.dry_run else FULL
    architecture = args.architecture or ("resnet_mini" if args.dry_run else "resnest101")
    batch = args.train_batch or sizes.train_batch
    started = time.perf_counter()
    print(f"device: {device_name(args.device)}; {environment(args.device)}", flush=True)
    crop = f"{sizes.train_crop}×{sizes.train_crop}"
    sections = [
        ("Random walk: sparse vs dense (3 random CAMs, beta 10, exp_times 8: 256 sparse float64 products "
         "vs 8 dense float32 squarings)", random_walk_rows(sizes, args.device)),
        (f"CAM inference ({architecture}, scales {','.join(map(str, SCALES))} with flips, "
         f"{sizes.image_size[1]}×{sizes.image_size[0]} images)", cam_inference_rows(sizes, architecture, args.device)),
        (f"Classifier training (Puzzle-CAM step, {architecture}, batch {batch}, {crop} crops)",
         training_rows(sizes, architecture, batch, args.device)),
        (f"DeepLabv3+ inference ({architecture}, GroupNorm, scales {','.join(map(str, SCALES))} with flips, "
         f"{sizes.image_size[1]}×{sizes.image_size[0]} images)", segmentation_rows(sizes, architecture, args.device)),
    ]
    seconds = time.perf_counter() - started
    report = ["# GPU check: benchmarks" + (" (DRY RUN: tiny sizes, not GPU numbers)" if args.dry_run else ""), "",
              f"Date: {datetime.date.today().isoformat()}. Device: {device_name(args.device)}. "
              f"{environment(args.device)}.",
              f"Command: `python -m bench.bench_gpu {' '.join(sys.argv[1:])}`; the benchmarks took {seconds:.0f} s.",
              "Random weights and in-memory random inputs (no data loading); each speed is measured after "
              f"{sizes.warmup} untimed warm-up run(s).", ""]
    if args.checks:
        report += ["## Checks run before the benchmarks (scripts/gpu_check.sh)", "", *checks_rows(args.checks), ""]
    for title, rows in sections:
        report += [f"## {title}", "", *rows, ""]
    write_text(args.output, "\n".join(report))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main(build_parser().parse_args())
