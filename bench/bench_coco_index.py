"""What listing and labelling COCO's train2014 costs a stage: from the annotation file, and from the
label index make_coco_masks.py writes beside the masks.

Run from the repository root:
    python -m bench.bench_coco_index --output bench/results/coco_index.md

The official file cannot be downloaded here, so the benchmark writes a synthetic
`annotations/instances_train2014.json` of the same shape into `--work_dir`: `--images` images with
COCO's fields, `--annotations` annotations on random images and categories, each a polygon of
`--points` points with two decimals (the defaults give train2014's counts and about 400 MB; the
official file is 450 MB). Each in a process of its own, it then lists the `train` images and reads
every label, as the classifier's datasets do (`COCOData.image_ids`, `COCOData.label`), once with no
index (the annotation file is parsed); writes the index as make_coco_masks.py does; and lists and
labels again from the index. Reported: wall and CPU time, the peak resident memory of the process
(Python, numpy, torch and the project's modules included) and what it still holds at the end (the
cached annotations or index).
"""
import argparse
import datetime
import json
import os
import pathlib
import platform
import random
import subprocess
import sys
import tempfile
import time

import numpy as np

from wsss.data import coco
from wsss.utils.files import write_text

SPLIT = "train2014"
PARTS = ("annotations", "write_index", "index")


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work_dir", type=str, default=str(pathlib.Path(tempfile.gettempdir()) / "bench_coco_index"),
                        help="where the synthetic COCO folder goes (about 400 MB)")
    parser.add_argument("--images", type=int, default=82783, help="images in the synthetic file")
    parser.add_argument("--annotations", type=int, default=604907, help="annotations in the synthetic file")
    parser.add_argument("--points", type=int, default=30, help="points per polygon")
    parser.add_argument("--part", type=str, choices=PARTS, default=None,
                        help="measure one way in this process and print its JSON (used by the benchmark itself)")
    parser.add_argument("--output", type=str, default=None, help="also write the report as markdown here")
    return parser


def write_annotation_file(path, images, annotations, points, seed=0):
    """A synthetic instances file with COCO's fields and train2014's file names."""
    rng = random.Random(seed)
    categories = [category for category, _ in coco.CATEGORIES]
    numbers = [9 + 7 * index for index in range(images)]
    image_entries = [{"license": 1, "file_name": f"{coco.image_name(SPLIT, number)}.jpg", "height": 480, "width": 640,
                      "coco_url": f"http://images.cocodataset.org/{SPLIT}/{coco.image_name(SPLIT, number)}.jpg",
                      "date_captured": "2013-11-14 16:28:13", "id": number} for number in numbers]
    annotation_entries = []
    for index in range(annotations):
        x, y = rng.uniform(0, 500), rng.uniform(0, 350)
        polygon = []
        for _ in range(points):
            polygon += [round(x + rng.uniform(0, 130), 2), round(y + rng.uniform(0, 120), 2)]
        annotation_entries.append({"segmentation": [polygon], "area": round(rng.uniform(10, 10000), 4), "iscrowd": 0,
                                   "image_id": rng.choice(numbers), "bbox": [round(x, 2), round(y, 2), 130.0, 120.0],
                                   "category_id": rng.choice(categories), "id": 100000 + index})
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as stream:
        json.dump({"info": {}, "licenses": [], "images": image_entries, "annotations": annotation_entries,
                   "categories": [{"id": category, "name": name, "supercategory": ""}
                                  for category, name in coco.CATEGORIES]}, stream)


def list_and_label(root):
    """List train and read every label, as a stage's dataset does: (images, positive labels)."""
    data = coco.COCOData(root)
    ids = data.image_ids("train")
    return len(ids), int(np.stack([data.label(image_id) for image_id in ids]).sum())


def write_index(root):
    """What make_coco_masks.py does besides the masks: parse the annotation file, write the index."""
    annotation_path = root / "annotations" / f"instances_{SPLIT}.json"
    records = coco.read_instances(annotation_path, SPLIT)
    coco.save_label_index(coco.label_index_path(root / "mask", SPLIT), coco.SplitLabels.from_records(records),
                          annotation_path)
    return len(records), None


def measure(work):
    """Run `work()` and return its costs as a dict."""
    before_wall, before_cpu = time.perf_counter(), time.process_time()
    images, labels = work()
    return {"images": images, "labels": labels, "wall_s": time.perf_counter() - before_wall,
            "cpu_s": time.process_time() - before_cpu, "peak_memory_gb": memory_gb("VmHWM"),
            "resident_memory_gb": memory_gb("VmRSS")}


def memory_gb(field):
    """A memory figure of this process from /proc (VmHWM: peak resident, VmRSS: resident now). Not
    getrusage's ru_maxrss, which a process started from a large parent inherits through fork."""
    with open("/proc/self/status") as stream:
        for line in stream:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024 / 1e9
    raise RuntimeError(f"/proc/self/status has no {field}")


def main(args):
    root = pathlib.Path(args.work_dir)
    index = coco.label_index_path(root / "mask", SPLIT)
    if args.part is not None:  # each part in a fresh process: the peak memory is inherited through fork
        if args.part == "annotations" and index.exists():
            index.unlink()
        work = write_index if args.part == "write_index" else list_and_label
        print(json.dumps(measure(lambda: work(root))))
        return
    annotation_path = root / "annotations" / f"instances_{SPLIT}.json"
    started = time.perf_counter()
    write_annotation_file(annotation_path, args.images, args.annotations, args.points)
    print(f"synthetic file: {annotation_path.stat().st_size / 1e6:.0f} MB in {time.perf_counter() - started:.0f} s",
          flush=True)
    results = {}
    for part in PARTS:
        command = [sys.executable, "-m", "bench.bench_coco_index", "--work_dir", str(root), "--part", part]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results[part] = json.loads(output.strip().splitlines()[-1])
        print(part, results[part], flush=True)
    assert results["annotations"]["labels"] == results["index"]["labels"], "the two ways disagree"
    lines = [
        "# Listing and labelling COCO train2014: annotation file vs label index",
        "",
        f"Date: {datetime.date.today()}. Machine: {os.cpu_count()} CPU cores ({platform.machine()}), "
        f"numpy {np.__version__}, Python {platform.python_version()}; load average (1 min) "
        f"{os.getloadavg()[0]:.2f} at the end.",
        f"Command: `python -m bench.bench_coco_index --images {args.images} --annotations {args.annotations} "
        f"--points {args.points}" + (f" --output {args.output}`" if args.output else "`"),
        f"Synthetic annotation file: {args.images:,} images, {args.annotations:,} polygons of {args.points} points, "
        f"{annotation_path.stat().st_size / 1e6:.0f} MB (the official instances_train2014.json: 450 MB); "
        f"label index {index.stat().st_size / 1e6:.2f} MB.",
        "",
        "| what | wall time | CPU time | peak memory | held at the end |",
        "|---|---|---|---|---|",
    ]
    for part, title in (("annotations", "list and label from the annotation file (no index)"),
                        ("write_index", "make_coco_masks.py: parse the annotation file, write the index"),
                        ("index", "list and label from the label index")):
        result = results[part]
        lines.append(f"| {title} | {result['wall_s']:.2f} s | {result['cpu_s']:.2f} s | "
                     f"{result['peak_memory_gb']:.2f} GB | {result['resident_memory_gb']:.2f} GB |")
    lines += ["", f"Both list {results['index']['images']:,} images with {results['index']['labels']:,} positive "
                  "labels in all. Memory is the whole process's (Python, numpy, torch and the project's modules "
                  "are imported by every part).", ""]
    text = "\n".join(lines)
    print(text)
    if args.output:
        write_text(args.output, text)


if __name__ == "__main__":
    main(build_parser().parse_args())
