"""Benchmark CPN on CPU: one training step and infer_cam per image, with the published sizes.

Run from the repository root:
    python -m bench.bench_cpn --output bench/results/cpn.md

Each part runs in a process of its own (so its peak memory is its own), torch on `--threads`
threads, ResNet-38 with random weights (the timings do not depend on the values), built as
train_cpn.py and infer_cam.py build it (`build_network("resnet38d")`):
  step      — one training step as train_cpn.py runs it: batch 1, a 448×448 crop, its complementary
              pair (SLIC mask), the triplet through the network in one forward, cpn_loss, backward,
              the SGD step with CPN's four groups; `--steps` steps, the first one warms up.
  step3     — the same step with the triplet as three forward passes (the published code's
              structure), for comparison.
  infer     — infer_cam.py's work for one image: 4 scales × flip = 8 passes of the refined map,
              fused and normalised (`cpn_image_cams`), `--images` images; one process per size of
              `--sizes` (default: 500×375 and 500×333, the commonest VOC sizes).
Reported: CPU time (user + system of all threads, from getrusage), its system part, the minor page
faults (memory touched afresh: PyTorch hands large blocks back to the system and maps them again
for every new tensor), wall time, and the peak resident memory of the process (ru_maxrss, the model
included).
"""
import argparse
import datetime
import functools
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter

from wsss.algorithms.complementary_patch import draw_superpixels, superpixel_keep_mask, superpixels
from wsss.algorithms.cpn_losses import cpn_loss
from wsss.methods.base import Schedule
from wsss.methods.cpn import build_network, cpn_image_cams, cpn_step_losses
from wsss.utils.files import write_text
from wsss.utils.optim import PolyOptimizer, build_groups

CROP = 448
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
PARTS = ("step", "step3", "infer")
# glibc's malloc hands every block above its mmap threshold back to the system when it is freed, so each
# new large tensor is mapped and faulted in afresh; these settings keep freed memory in the process.
KEEP_FREED_MEMORY = {"MALLOC_MMAP_THRESHOLD_": str(2 ** 32), "MALLOC_TRIM_THRESHOLD_": str(2 ** 36),
                     "MALLOC_TOP_PAD_": str(2 ** 30)}


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", type=str, choices=PARTS, default=None,
                        help="run one part in this process and print its JSON (default: every part, each in "
                             "a process of its own, and the report)")
    parser.add_argument("--parts", type=str, default=",".join(PARTS),
                        help=f"comma-separated parts to run, each in a process of its own ({', '.join(PARTS)})")
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads (2 = torch's default on a 2-core machine)")
    parser.add_argument("--steps", type=int, default=2, help="training steps (the first warms up)")
    parser.add_argument("--sizes", type=str, default="500x375,500x333",
                        help="image sizes WxH for infer_cam, each in a process of its own")
    parser.add_argument("--images", type=int, default=1, help="images per size for infer_cam")
    parser.add_argument("--keep_freed_memory", action="store_true",
                        help="run infer_cam a second time with glibc told to keep freed memory (KEEP_FREED_MEMORY)")
    parser.add_argument("--output", type=str, default=None, help="also write the report as markdown here")
    return parser


def smooth_image(seed, height, width):
    """Gaussian-smoothed noise in [0, 1], H×W×3: regions and edges like a photograph's."""
    raw = gaussian_filter(np.random.RandomState(seed).rand(height, width, 3), (8, 8, 0))
    return (raw - raw.min()) / (raw.max() - raw.min())


def peak_memory_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2  # Linux: kilobytes


def timed(function):
    """(result, measures): CPU time (user + system), its system part, minor page faults, wall time and
    the 1-minute load average at the end."""
    before, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    result = function()
    after = resource.getrusage(resource.RUSAGE_SELF)
    system = after.ru_stime - before.ru_stime
    return result, {"cpu_s": after.ru_utime - before.ru_utime + system, "system_s": system,
                    "page_faults": after.ru_minflt - before.ru_minflt, "wall_s": time.perf_counter() - wall,
                    "load": os.getloadavg()[0]}


def three_pass_losses(model, batch, args, schedule):
    """The published structure: img, img1 and img2 through the network one after the other."""
    images, labels, keep, kept = batch
    mask = keep[:, None].to(images.dtype)
    outputs = [model(x) for x in (images, images * mask, images * (1 - mask))]
    return cpn_loss(outputs, labels, kept, 1 - kept)


def run_step(args, three_passes):
    torch.manual_seed(0)
    model = build_network("resnet38d").train()
    optimizer = PolyOptimizer(build_groups(model.parameter_groups(), 0.01, 5e-4), 0.01, 5e-4, max_step=100)
    model_memory = peak_memory_gb()
    crop = torch.from_numpy(((smooth_image(0, CROP, CROP) - MEAN) / STD).astype(np.float32).transpose(2, 0, 1))
    def mask():
        labels = superpixels(crop)
        return superpixel_keep_mask(labels, draw_superpixels(int(labels.max()), np.random.default_rng(0)))
    (keep, kept), mask_timing = timed(mask)
    label = torch.zeros(1, 20)
    label[0, [6, 14]] = 1  # car, person
    batch = [crop[None], label, torch.from_numpy(keep)[None], torch.tensor([kept], dtype=torch.float64)]
    losses = three_pass_losses if three_passes else cpn_step_losses
    steps = []
    for _ in range(args.steps):
        def step():
            result = losses(model, batch, None, Schedule(0, 100, 1))
            optimizer.zero_grad()
            result["total"].backward()
            optimizer.step()
            return float(result["total"])
        loss, timing = timed(step)
        steps.append({**timing, "loss": loss})
    return {"steps": steps, "model_memory_gb": model_memory, "peak_memory_gb": peak_memory_gb(),
            "mask_cpu_s": mask_timing["cpu_s"]}


def image_size(text):
    """'500x375' → (500, 375), width × height."""
    width, height = (int(value) for value in text.lower().split("x"))
    return width, height


def run_infer(args):
    torch.manual_seed(0)
    model = build_network("resnet38d").eval()
    model_memory = peak_memory_gb()
    label = np.zeros(20, np.float32)
    label[[6, 14]] = 1
    width, height = image_size(args.sizes)
    images = []
    for index in range(args.images):
        image = Image.fromarray((smooth_image(index, height, width) * 255).astype(np.uint8))
        (_, _, hr_cam), timing = timed(
            functools.partial(cpn_image_cams, model, image, label, (0.5, 1.0, 1.5, 2.0), torch.device("cpu")))
        images.append({**timing, "hr_cam": list(hr_cam.shape), "max": float(hr_cam.max())})
    return {"images": images, "size": f"{width}×{height}", "model_memory_gb": model_memory,
            "peak_memory_gb": peak_memory_gb()}


def run_part(args):
    torch.set_num_threads(args.threads)
    if args.part == "infer":
        return run_infer(args)
    return run_step(args, three_passes=args.part == "step3")


def timing_cells(timing, memory):
    return (f"{timing['cpu_s']:.1f} s | {timing['system_s']:.1f} s | {timing['page_faults'] / 1e6:.2f} M | "
            f"{timing['wall_s']:.1f} s | {timing['load']:.1f} | {memory} |")


def report(args, results, load_before, load_after):
    lines = [
        "# CPN on CPU: a training step and infer_cam",
        "",
        f"Date: {datetime.date.today()}. Machine: {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
        f"torch {torch.__version__} ({args.threads} threads), numpy {np.__version__}, Python {platform.python_version()}. "
        "No GPU in this session: GPU figures not measured.",
        f"Load average (1 min): {load_before:.2f} before, {load_after:.2f} after (the machine is shared).",
        f"Command: `python -m bench.bench_cpn --parts {args.parts} --threads {args.threads} --steps {args.steps} "
        f"--sizes {args.sizes} --images {args.images}" + (" --keep_freed_memory" if args.keep_freed_memory else "")
        + (f" --output {args.output}`" if args.output else "`"),
        "",
        ("ResNet-38 CPN with random weights; CPU time = user + system of all threads (system also shown); "
         "page faults = minor faults (memory touched afresh); load = 1-minute load average at the end; "
         "memory = peak resident set of the process (model, gradients, optimiser state and activations)."),
        "",
        "| part | CPU time | system | page faults | wall time | load | peak memory (model alone) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, title in (("step", "training step, one forward of the triplet (ours)"),
                        ("step3", "training step, three forward passes (published structure)")):
        if name not in results:
            continue
        part = results[name]
        memory = f"{part['peak_memory_gb']:.2f} GB ({part['model_memory_gb']:.2f} GB)"
        for index, timing in enumerate(part["steps"]):
            lines.append(f"| {title}, step {index + 1}{' (warm-up)' if index == 0 else ''} | "
                         + timing_cells(timing, memory))
    for name, part in results.items():
        if name.startswith("infer"):
            memory = f"{part['peak_memory_gb']:.2f} GB ({part['model_memory_gb']:.2f} GB)"
            for index, timing in enumerate(part["images"]):
                kept = ", glibc keeps freed memory" if part.get("keep_freed_memory") else ""
                lines.append(f"| infer_cam, {part['size']} image {index + 1}, 8 passes{kept} | "
                             + timing_cells(timing, memory))
    if "step" in results:
        lines.append(f"| complementary mask of the crop (SLIC + draw; in the loader workers) | "
                     f"{results['step']['mask_cpu_s']:.2f} s | | | | | |")
    return "\n".join(lines) + "\n"


def main(args):
    if args.part is not None:
        print(json.dumps(run_part(args)))
        return
    parts = args.parts.split(",")
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise SystemExit(f"--parts: unknown parts {unknown}; choose from {list(PARTS)}")
    runs = [(part, None, False) for part in parts if part != "infer"]
    if "infer" in parts:
        runs += [("infer", size, False) for size in args.sizes.split(",")]
        if args.keep_freed_memory:
            runs += [("infer", size, True) for size in args.sizes.split(",")]
    load_before = os.getloadavg()[0]
    results = {}
    for part, size, keep_freed_memory in runs:
        command = [sys.executable, "-m", "bench.bench_cpn", "--part", part, "--threads", str(args.threads),
                   "--steps", str(args.steps), "--images", str(args.images)] + (["--sizes", size] if size else [])
        environment = {**os.environ, **(KEEP_FREED_MEMORY if keep_freed_memory else {})}
        output = subprocess.run(command, check=True, capture_output=True, text=True, env=environment).stdout
        name = part if size is None else f"{part} {size}" + (", glibc keeps freed memory" if keep_freed_memory else "")
        results[name] = {**json.loads(output.strip().splitlines()[-1]), "keep_freed_memory": keep_freed_memory}
        print(name, results[name], flush=True)
    text = report(args, results, load_before, os.getloadavg()[0])
    print(text)
    if args.output:
        write_text(args.output, text)


if __name__ == "__main__":
    main(build_parser().parse_args())
