"""Benchmark the sparse random walk (wsss/algorithms/random_walk.py) against the published dense formula
(bench/dense_rw.py) on the same random inputs, at strided grids up to 94×125 (a 500×375 image).

Run from the repository root:
    python -m bench.bench_random_walk                                   # dense up to 47×63
    python -m bench.bench_random_walk --max_dense_grid 94x125 --output bench/results/random_walk.md
    python -m bench.bench_random_walk --device cuda --max_dense_grid 94x125     # on a GPU

On the CPU each measurement runs in a fresh subprocess: it builds the inputs, warms the code up on
a tiny grid, resets the kernel's peak-RSS counter (/proc/self/clear_refs), then reports the wall
and CPU time (user + system, all threads) and the peak extra memory (VmHWM − VmRSS before the
walk). On CUDA the walks run in this process, timed between device synchronisations, and the peak
extra memory is the CUDA caching allocator's peak above what was allocated before the walk. The
sparse walk is timed `--sparse_repeats` times and the fastest run kept; the dense walk, which takes
minutes and over a gigabyte at 94×125 on the CPU, runs once. Speed-up = ratio of CPU times on the
CPU (which other work on the machine disturbs less than wall time), of wall times on CUDA.
Difference = max |sparse − dense| after dividing each by its global max.
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

from bench.dense_rw import dense_random_walk
from wsss.algorithms.random_walk import normalise_rw, random_walk
from wsss.utils.files import write_text

GRIDS = [(24, 32), (47, 63), (71, 94), (94, 125)]  # 128×96, 250×188, 375×281, 500×375 images
WALKS = {"sparse": random_walk, "dense": dense_random_walk}


def parse_grid(text):
    height, width = (int(side) for side in text.lower().split("x"))
    return height, width


def parse_grids(text):
    return [parse_grid(grid) for grid in text.split(",")]


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max_dense_grid", type=parse_grid, default=(47, 63),
                        help="largest grid HxW (by pixel count) on which to run the dense walk")
    parser.add_argument("--classes", type=int, default=3, help="number of foreground CAMs")
    parser.add_argument("--beta", type=int, default=10, help="affinity exponent")
    parser.add_argument("--exp_times", type=int, default=8, help="the walk takes 2^exp_times steps")
    parser.add_argument("--sparse_repeats", type=int, default=3,
                        help="time the sparse walk this many times and keep the fastest (the dense runs once)")
    parser.add_argument("--grids", type=parse_grids, default=GRIDS,
                        help="grids HxW to measure, comma-separated (default: " +
                             ",".join(f"{h}x{w}" for h, w in GRIDS) + ")")
    parser.add_argument("--device", type=torch.device, default=torch.device("cpu"),
                        help="cpu, or cuda (both walks on the GPU, measured in this process)")
    parser.add_argument("--output", type=str, default=None, help="also write the table as markdown here")
    parser.add_argument("--measure", choices=sorted(WALKS), help=argparse.SUPPRESS)
    parser.add_argument("--grid", type=parse_grid, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=str, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=1, help=argparse.SUPPRESS)
    return parser


def make_inputs(height, width, classes, seed=0):
    """CAMs in [0, 1) and a sparse-looking edge map (mostly low, a few strong edges)."""
    generator = torch.Generator().manual_seed(seed)
    cams = torch.rand(classes, height, width, generator=generator)
    edge = torch.rand(height, width, generator=generator) ** 4
    return cams, edge


def memory_status(field):
    """A /proc/self/status memory field (VmRSS, VmHWM) in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device):
    """Start a peak-memory measurement; returns the baseline in bytes."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # reset VmHWM to the current RSS
    return memory_status("VmRSS")


def peak_memory(device):
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else memory_status("VmHWM")


def measure_walk(method, grid, args, device, repeats=1):
    """One walk on `device` in this process: its result (on the CPU) and {seconds, cpu_seconds,
    peak_extra_bytes}, the fastest of `repeats` runs."""
    walk = WALKS[method]
    cams, edge = (tensor.to(device) for tensor in make_inputs(*grid, args.classes))
    walk(*(tensor.to(device) for tensor in make_inputs(4, 4, args.classes)), beta=args.beta, exp_times=1)  # warm-up
    synchronize(device)
    baseline = reset_peak_memory(device)
    elapsed, elapsed_cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = walk(cams, edge, beta=args.beta, exp_times=args.exp_times)
        synchronize(device)
        elapsed.append(time.perf_counter() - start)
        elapsed_cpu.append(time.process_time() - start_cpu)
    peak_extra = peak_memory(device) - baseline
    return result.cpu(), {"seconds": min(elapsed), "cpu_seconds": min(elapsed_cpu), "peak_extra_bytes": peak_extra}


def measure(args):
    """Child process: one walk, its time and peak extra memory as JSON on stdout."""
    result, stats = measure_walk(args.measure, args.grid, args, torch.device("cpu"), args.repeats)
    np.save(args.result, result.numpy())
    print(json.dumps(stats))


def run_child(args, method, grid, result_path):
    command = [sys.executable, "-m", "bench.bench_random_walk", "--measure", method,
               "--grid", f"{grid[0]}x{grid[1]}", "--result", result_path, "--classes", str(args.classes),
               "--beta", str(args.beta), "--exp_times", str(args.exp_times),
               "--repeats", str(args.sparse_repeats if method == "sparse" else 1)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def megabytes(count):
    return f"{count / 2 ** 20:.1f} MB"


def times(measurement, device):
    if device.type == "cuda":
        return f"{measurement['seconds'] * 1000:.1f} ms"
    return f"{measurement['seconds']:.2f} s / {measurement['cpu_seconds']:.2f} s"


def table_header(device):
    if device.type == "cuda":
        return ("| grid (h×w) | pixels | sparse time | dense time | speed-up | sparse peak CUDA memory | "
                "dense peak CUDA memory | memory ratio | max diff (normalised) |")
    return ("| grid (h×w) | pixels | sparse wall / CPU | dense wall / CPU | speed-up (CPU) | sparse peak extra | "
            "dense peak extra | memory ratio | max diff (normalised) |")


def table_row(grid, sparse, dense, device):
    """A markdown row from the two walks' (result, stats); dense None when not run."""
    cells = [f"{grid[0]}×{grid[1]}", str(grid[0] * grid[1]), times(sparse[1], device)]
    if dense is None:
        cells += ["—", "—", megabytes(sparse[1]["peak_extra_bytes"]), "—", "—", "—"]
    else:
        clock = "seconds" if device.type == "cuda" else "cpu_seconds"
        difference = (normalise_rw(sparse[0].double()) - normalise_rw(dense[0].double())).abs().max().item()
        memories = sparse[1]["peak_extra_bytes"], dense[1]["peak_extra_bytes"]
        cells += [times(dense[1], device), f"{dense[1][clock] / max(sparse[1][clock], 1e-9):.0f}×",
                  megabytes(memories[0]), megabytes(memories[1]),
                  f"{memories[1] / memories[0]:.0f}×" if memories[0] > 0 else "—", f"{difference:.1e}"]
    return "| " + " | ".join(cells) + " |"


def benchmark(args):
    header = table_header(args.device)
    rows = [header, "|" + "---|" * 9]
    print(header, flush=True)
    dense_limit = args.max_dense_grid[0] * args.max_dense_grid[1]
    with tempfile.TemporaryDirectory() as folder:
        for grid in args.grids:
            methods = ["sparse"] + (["dense"] if grid[0] * grid[1] <= dense_limit else [])
            walks = {}
            for method in methods:
                if args.device.type == "cuda":
                    repeats = args.sparse_repeats if method == "sparse" else 1
                    walks[method] = measure_walk(method, grid, args, args.device, repeats)
                else:
                    path = os.path.join(folder, f"{method}.npy")
                    stats = run_child(args, method, grid, path)
                    walks[method] = (torch.from_numpy(np.load(path)), stats)
            row = table_row(grid, walks["sparse"], walks.get("dense"), args.device)
            rows.append(row)
            print(row, flush=True)
    return rows


def machine_description(device=torch.device("cpu")):
    if device.type == "cuda":
        return (f"{torch.cuda.get_device_name(device)}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
                f"Python {platform.python_version()}")
    with open("/proc/cpuinfo") as cpuinfo:
        models = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    model = models[0] if models else platform.processor()
    return (f"{os.cpu_count()} CPU cores ({model}), torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), Python {platform.python_version()}")


def main(args):
    if args.measure:
        measure(args)
        return
    print(machine_description(args.device), flush=True)
    load_before = os.getloadavg()[0]
    rows = benchmark(args)
    load = f"load average (1 min) {load_before:.2f} before, {os.getloadavg()[0]:.2f} after"
    print(load)
    if args.output:
        report = [
            "# Random walk: sparse products vs the published dense squaring",
            "",
            f"Date: {datetime.date.today().isoformat()}. Machine: {machine_description(args.device)}.",
            f"Inputs: {args.classes} random CAMs, edge = uniform⁴, beta = {args.beta}, "
            f"exp_times = {args.exp_times} (2^{args.exp_times} sparse products vs {args.exp_times} dense squarings).",
            ("Peak extra = the CUDA allocator's peak above the memory allocated before the walk; "
             if args.device.type == "cuda" else
             "Peak extra = VmHWM − VmRSS around the walk, in a fresh process per measurement; ") + f"{load}.",
            f"Command: `python -m bench.bench_random_walk {' '.join(sys.argv[1:])}`",
            "",
            *rows,
            "",
        ]
        write_text(args.output, "\n".join(report))


if __name__ == "__main__":
    main(build_parser().parse_args())
