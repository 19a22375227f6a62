"""Per-image CPU stages (label making, CRF) over worker processes, with skip-if-done resumption."""
import multiprocessing

from tqdm import tqdm

from tools.files import exit_on_sigterm


def pending_ids(ids, out_dir, suffix=".png"):
    """The ids whose output file does not exist yet (outputs are written atomically, so an
    existing file is complete)."""
    return [image_id for image_id in ids if not (out_dir / f"{image_id}{suffix}").exists()]


def run_per_image(work, ids, num_workers, desc):
    """Call `work(image_id)` for every id, in `num_workers` processes (inline when ≤ 1).

    Each call writes its own output file, so the results do not depend on the worker count.
    """
    bar = tqdm(total=len(ids), desc=desc, dynamic_ncols=True)
    with bar:
        if num_workers <= 1:
            for image_id in ids:
                work(image_id)
                bar.update(1)
            return
        with multiprocessing.get_context("fork").Pool(num_workers, initializer=exit_on_sigterm) as pool:
            for _ in pool.imap_unordered(work, ids, chunksize=4):
                bar.update(1)
