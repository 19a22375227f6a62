"""The one skeleton of every per-image stage: the image list → this process's share → the ids whose
output is still missing → a worker per image → one atomically written file per image.

An output file exists only once it is complete (every writer goes through `files.atomic_path`), so
"finished" is "its file exists": a stopped stage rerun with the same command does the rest.
CPU stages (label making, CRF, PerimeterFit) spread the images over worker processes
(`run_per_image`); model stages load images in DataLoader workers and run the model in this
process (`run_over_loader`). Under torchrun or with `--shard i/n` each process takes its share.
"""

from torch.utils.data import DataLoader

from wsss.utils import distributed
from wsss.utils.files import check_writable
from wsss.utils.logs import progress
from wsss.utils.processes import loader_worker_setup, worker_pool

WRITABLE_ADVICE = "make it writable or pass another --pred_dir"


def output_exists(out_dir, image_id, suffixes):
    return any((out_dir / f"{image_id}{suffix}").exists() for suffix in suffixes)


def pending_ids(ids, out_dir, suffixes=(".png",)):
    """The ids with no output file yet, under any of `suffixes` (a map folder counts the published
    `.npy` as done as well as this project's `.npz`)."""
    return [image_id for image_id in ids if not output_exists(out_dir, image_id, suffixes)]


def plan_outputs(out_dir, ids, shard=None, suffixes=(".png",), advice=WRITABLE_ADVICE):
    """Check that `out_dir` can be written and return this process's unfinished ids.

    The share is taken from the full list before the finished ids are dropped, so that the split
    between processes does not move while others write."""
    check_writable(out_dir, advice)
    return pending_ids(distributed.share(ids, shard), out_dir, suffixes)


def run_per_image(work, ids, out_dir, num_workers):
    """Create `out_dir`, then call `work(image_id)` for every id, in `num_workers` processes
    (inline when ≤ 1). Each call writes its own file, so the results do not depend on the worker
    count. Call it once the inputs are checked: a refused input leaves nothing behind."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with progress(total=len(ids), desc=out_dir.name) as bar:
        if num_workers <= 1:
            for image_id in ids:
                work(image_id)
                bar.update(1)
            return
        with worker_pool(num_workers) as pool:
            for _ in pool.imap_unordered(work, ids, chunksize=4):
                bar.update(1)


def run_over_loader(dataset, work, out_dir, num_workers):
    """Create `out_dir`, then call `work(*item)` in this process for every item of `dataset`, loaded
    one at a time by `num_workers` DataLoader workers (a model stage: the model stays in one process)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    loader = DataLoader(dataset, batch_size=1, num_workers=num_workers, collate_fn=_single_item,
                        worker_init_fn=loader_worker_setup)
    for item in progress(loader, desc=out_dir.name):
        work(*item)


def _single_item(batch):
    return batch[0]
