"""Benchmark SILOP's preprocessing: PerimeterFit (wsss/algorithms/perimeter_fit.py) against the direct
per-pixel PIL flood fills (bench/perimeter_fit_direct.py), and the unsupervised segmentation
(wsss/algorithms/uss.py) against the same training with the published per-superpixel loop for the
targets. Both pairs must give identical outputs; the run stops with an error otherwise.

Run from the repository root:
    python -m bench.bench_perimeter_fit                 # writes bench/results/perimeter_fit.md, uss.md, silop_costs.md

Inputs are synthetic and seeded. PerimeterFit: a palette image of Voronoi regions and small blobs
painted with the USS palette and passed through JPEG (quality 95, as OpenCV writes the published
USS files), its perimeter map, and 3 smooth CAMs. USS: a 320×240 image of striped shapes on gradients, with noise. The per-stage costs (silop_costs.md,
for the README's estimate of a whole VOC run) use the same generators at 500×375.
Torch and OpenCV run on one thread so that the times are CPU seconds of one core.
"""
import argparse
import datetime
import os
import platform
import statistics
import time
from dataclasses import dataclass
from functools import partial

import cv2
import numpy as np
import torch
from torch import nn

from bench.perimeter_fit_direct import perimeter_fit_direct
from wsss.algorithms.perimeter_fit import combine_perimeter_fit, perimeter_fit, perimeter_map
from wsss.algorithms.uss import (
    NUM_LABELS,
    USSNet,
    USSResult,
    majority_targets,
    paint_labels,
    superpixels,
    unsupervised_segmentation,
    uss_palette,
)
from wsss.utils.files import write_text

PERIMETER_FIT_SIZES = [(375, 500), (240, 320)]  # (height, width)
USS_SIZE = (240, 320)
COST_SIZE = (375, 500)  # the most common VOC image size
COST_STEPS = 8  # USS training steps timed per segment mode (early stop off)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, default=3, help="number of foreground CAMs for PerimeterFit")
    parser.add_argument("--repeats", type=int, default=3, help="PerimeterFit runs per implementation (median kept)")
    parser.add_argument("--uss_repeats", type=int, default=1, help="USS runs per implementation (median kept)")
    parser.add_argument("--skip_uss", action="store_true", help="only benchmark PerimeterFit (no USS, no stage costs)")
    parser.add_argument("--output_dir", type=str, default="bench/results", help="folder for the markdown tables")
    return parser


def uss_like_image(height, width, seed=0):
    """A decoded JPEG of a palette image: Voronoi regions of 12 USS colours plus small blobs."""
    rng = np.random.default_rng(seed)
    palette = uss_palette()[:12]
    centres = rng.uniform(0, 1, size=(40, 2)) * (height, width)
    ys, xs = np.mgrid[:height, :width]
    nearest = ((ys[..., None] - centres[:, 0]) ** 2 + (xs[..., None] - centres[:, 1]) ** 2).argmin(axis=2)
    labels = rng.integers(0, 12, size=40)[nearest]
    for _ in range(150):  # small irregular blobs, as the superpixel-sized bits of a real USS map
        y, x = rng.integers(0, height), rng.integers(0, width)
        radius = rng.uniform(2, 8)
        labels[(ys - y) ** 2 + ((xs - x) * rng.uniform(0.5, 2)) ** 2 < radius ** 2] = rng.integers(0, 12)
    painted = palette[labels].astype(np.uint8)
    encoded = cv2.imencode(".jpg", painted, [cv2.IMWRITE_JPEG_QUALITY, 95])[1]
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR)


def smooth_cams(classes, height, width, seed=0):
    """K CAMs in [0, 1]: a few Gaussian bumps each, exactly zero far from them."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[:height, :width]
    cams = np.zeros((classes, height, width))
    for cam in cams:
        for _ in range(2):
            y, x = rng.uniform(0, height), rng.uniform(0, width)
            sigma = rng.uniform(0.08, 0.2) * min(height, width)
            cam += np.exp(-((ys - y) ** 2 + (xs - x) ** 2) / (2 * sigma ** 2))
    cams = np.clip(cams, 0, 1)
    cams[cams < 0.02] = 0.0
    return cams.astype(np.float32)


def timed(function, repeats):
    """Median wall and CPU seconds of `repeats` calls, and the last result."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = function()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return Timing(statistics.median(walls), statistics.median(cpus)), result


@dataclass
class Timing:
    wall: float  # seconds
    cpu: float  # seconds of CPU time of this process

    def __str__(self):
        return f"{self.wall:.3f} / {self.cpu:.3f}"


def bench_perimeter_fit(args):
    machine = machine_line()
    rows = []
    for height, width in PERIMETER_FIT_SIZES:
        bgr = uss_like_image(height, width)
        perimeter = perimeter_map(bgr)
        rgb = np.ascontiguousarray(bgr[..., ::-1])  # PerimeterFit reads the USS JPEG with PIL
        cams = smooth_cams(args.classes, height, width)
        for segment in ("slic", "quick"):
            perimeter_fit(rgb[:8, :8], perimeter[:8, :8], cams[:, :8, :8], segment)  # warm-up
            inputs = (rgb, perimeter, cams, segment)
            fast_time, fast = timed(partial(perimeter_fit, *inputs), args.repeats)
            direct_time, direct = timed(partial(perimeter_fit_direct, *inputs), args.repeats)
            published_time, published = timed(partial(perimeter_fit_direct, *inputs, calls_per_seed=3), 1)
            if not (np.array_equal(fast, direct) and np.array_equal(fast, published)):
                raise SystemExit(f"PerimeterFit {segment} at {height}×{width}: the outputs differ")
            rows.append(f"| {width}×{height} | {segment} | {args.classes} | {fast_time} | {direct_time} | "
                        f"{direct_time.cpu / fast_time.cpu:.0f}× | {published_time} | "
                        f"{published_time.cpu / fast_time.cpu:.0f}× | "
                        f"yes ({int((fast[0] > 0).sum())}, {int((fast[1:] > 0).sum())}) |")
            print(rows[-1], flush=True)
    header = [
        "# PerimeterFit: fast fills vs per-pixel PIL flood fills",
        "",
        machine,
        f"Command: `python -m bench.bench_perimeter_fit` (repeats {args.repeats}; the published loop runs once).",
        ("Input: a synthetic USS-like palette image through JPEG quality 95, its perimeter map, "
         f"{args.classes} smooth CAMs (zero far from their bumps)."),
        ("Direct = one `ImageDraw.floodfill(thresh=10)` call per seed; published loop = three calls per seed as "
         "the published script makes (the 2nd and 3rd return at once). Times: median wall / CPU seconds per "
         "image, all K+1 channels; speed-ups are ratios of CPU times (other jobs on the machine disturb them less)."),
        "",
        ("| image (w×h) | segment | classes | fast (s) | direct (s) | speed-up | published loop (s) | speed-up | "
         "identical (kept px: background, classes) |"),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    write_text(os.path.join(args.output_dir, "perimeter_fit.md"), "\n".join(header + rows) + "\n")


def loop_majority_targets(labels, segment_pixels):
    """The published refinement: one `np.unique` per superpixel (pixel lists built once)."""
    labels = labels.copy()
    for pixels in segment_pixels:
        values, counts = np.unique(labels[pixels], return_counts=True)
        labels[pixels] = values[np.argmax(counts)]
    return labels


def uss_with_loop_targets(image, superpixel_map, max_iterations=64, min_labels=20, seed=43):
    """The same training as `unsupervised_segmentation`, with the per-superpixel loop for the targets."""
    flat = superpixel_map.ravel()
    segment_pixels = [np.where(flat == value)[0] for value in np.unique(flat)]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = USSNet()
    inputs = torch.from_numpy(image.transpose(2, 0, 1).astype(np.float32) / 255.0)[None]
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=5e-2, momentum=0.9)
    model.train()
    for iteration in range(1, max_iterations + 1):
        optimizer.zero_grad()
        scores = model(inputs)[0].permute(1, 2, 0).reshape(-1, NUM_LABELS)
        targets = loop_majority_targets(torch.argmax(scores, dim=1).numpy(), segment_pixels)
        criterion(scores, torch.from_numpy(targets)).backward()
        optimizer.step()
        if len(np.unique(targets)) < min_labels:
            break
    labels = targets.reshape(image.shape[:2])
    return USSResult(labels=labels, painted=paint_labels(labels, uss_palette(seed)), iterations=iteration)


def natural_like_image(height, width, seed=0):
    """Smooth colour gradients under 60 striped ellipses, with noise, as OpenCV would read it (BGR)."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[:height, :width] / max(height, width)
    image = np.stack([120 + 80 * np.sin(3 * xs + 1), 100 + 90 * ys, 140 - 60 * xs * ys], axis=-1)
    for _ in range(60):
        centre_y, centre_x = rng.uniform(0, height / max(height, width)), rng.uniform(0, 1)
        radius_y, radius_x = rng.uniform(0.02, 0.15, size=2)
        inside = ((ys - centre_y) / radius_y) ** 2 + ((xs - centre_x) / radius_x) ** 2 < 1
        stripes = 30 * np.sin(40 * xs[inside, None] * rng.uniform(0.5, 2, size=3))
        image[inside] = rng.uniform(0, 255, size=3) + stripes
    return np.clip(image + rng.normal(0, 10, size=image.shape), 0, 255).astype(np.uint8)


def bench_uss(args):
    machine = machine_line()
    height, width = USS_SIZE
    image = natural_like_image(height, width)
    rows = []
    for segment in ("slic", "quick"):
        superpixel_time, superpixel_map = timed(partial(superpixels, image, segment), 1)
        unsupervised_segmentation(image[:16, :16], superpixel_map[:16, :16], max_iterations=2)  # warm-up
        fast_time, fast = timed(partial(unsupervised_segmentation, image, superpixel_map), args.uss_repeats)
        loop_time, loop = timed(partial(uss_with_loop_targets, image, superpixel_map), args.uss_repeats)
        if not (np.array_equal(fast.painted, loop.painted) and fast.iterations == loop.iterations):
            raise SystemExit(f"USS {segment}: the vectorised and the loop targets give different results")
        rows.append(f"| {width}×{height} | {segment} | {len(np.unique(superpixel_map))} | {superpixel_time} | "
                    f"{fast.iterations} | {len(np.unique(fast.labels))} | {fast_time} | {loop_time} | "
                    f"{loop_time.cpu / fast_time.cpu:.2f}× | yes |")
        print(rows[-1], flush=True)
    header = [
        "# USS: superpixel-majority targets by bincount vs the published per-superpixel loop",
        "",
        machine,
        f"Command: `python -m bench.bench_perimeter_fit` (USS repeats {args.uss_repeats}).",
        ("Input: a synthetic 320×240 image (gradients, striped shapes, noise). Both columns train the same seeded "
         "network on the same superpixels; training times exclude the superpixels (their own column). "
         "Times: median wall / CPU seconds; speed-up = ratio of CPU times."),
        "",
        ("| image (w×h) | segment | superpixels | superpixels (s) | iterations | labels left | "
         "training, bincount (s) | training, loop (s) | speed-up | identical |"),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    write_text(os.path.join(args.output_dir, "uss.md"), "\n".join(header + rows) + "\n")


def bench_stage_costs(args):
    """Per-image CPU costs of SILOP's stages at 500×375: superpixels and one USS training step per
    mode, the host-side part of a step (superpixel majority and label count, what stays on the CPU when
    the network runs on a GPU), the perimeter map, PerimeterFit per mode, the combination."""
    height, width = COST_SIZE
    image = natural_like_image(height, width)
    rows = []
    for segment in ("slic", "quick"):
        superpixel_time, superpixel_map = timed(partial(superpixels, image, segment), args.repeats)
        unsupervised_segmentation(image[:16, :16], superpixel_map[:16, :16], max_iterations=2)  # warm-up
        training_time, _ = timed(partial(unsupervised_segmentation, image, superpixel_map, max_iterations=COST_STEPS,
                                         min_labels=0), 1)
        rows.append(f"| USS superpixels, {segment} ({len(np.unique(superpixel_map))}) | {superpixel_time} |")
        rows.append(f"| USS training step, {segment} | {training_time.wall / COST_STEPS:.3f} / "
                    f"{training_time.cpu / COST_STEPS:.3f} |")
    rng = np.random.default_rng(0)
    labels, segments = rng.integers(0, NUM_LABELS, height * width), rng.integers(0, 800, height * width)
    host_time, _ = timed(lambda: len(np.unique(majority_targets(labels, segments, 800))), args.repeats)
    rows.append(f"| USS host part of a step (majority targets, label count) | {host_time} |")
    picture = uss_like_image(height, width)
    perimeter_time, perimeter = timed(partial(perimeter_map, picture), args.repeats)
    rows.append(f"| perimeter map | {perimeter_time} |")
    cams = smooth_cams(args.classes, height, width)
    masks = {}
    for segment in ("slic", "quick"):
        fit_time, masks[segment] = timed(partial(perimeter_fit, picture, perimeter, cams, segment), args.repeats)
        rows.append(f"| PerimeterFit, {segment}, {args.classes} classes | {fit_time} |")
    strided = np.ascontiguousarray(cams[:, ::4, ::4])
    combine_time, _ = timed(partial(combine_perimeter_fit, cams, strided, masks["slic"], masks["quick"]), args.repeats)
    rows.append(f"| combination, {args.classes} classes | {combine_time} |")
    for row in rows:
        print(row, flush=True)
    header = [
        f"# SILOP's stages: CPU cost per {width}×{height} image",
        "",
        machine_line(),
        f"Command: `python -m bench.bench_perimeter_fit` (repeats {args.repeats}; USS: {COST_STEPS} training steps timed "
        "once per mode, early stop off).",
        ("Inputs: the synthetic images of the other two tables at this size. A USS run takes superpixels plus one "
         "training step per iteration until fewer than 20 labels remain (64 steps at most). "
         "Times: median wall / CPU seconds."),
        "",
        "| step | time (s) |",
        "|---|---|",
    ]
    write_text(os.path.join(args.output_dir, "silop_costs.md"), "\n".join(header + rows) + "\n")


def machine_line():
    load = os.getloadavg()[0]
    processor = platform.processor() or "unknown processor"
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as cpuinfo:
            names = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
        processor = names[0] if names else processor
    return (f"Date: {datetime.date.today()}. Machine: {os.cpu_count()} CPU cores ({processor}), "
            f"torch {torch.__version__} and OpenCV on one thread, Python {platform.python_version()}, "
            f"OpenCV {cv2.__version__}; load average (1 min) {load:.2f} at the start.")


def main(args):
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    os.makedirs(args.output_dir, exist_ok=True)
    bench_perimeter_fit(args)
    if not args.skip_uss:
        bench_uss(args)
        bench_stage_costs(args)


if __name__ == "__main__":
    main(build_parser().parse_args())
