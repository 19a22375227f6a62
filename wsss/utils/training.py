"""The one training loop of every trainer (classifier, AffinityNet, DeepLabv3+).

A stage gives `step_losses(model, batch, iteration)` → dict of scalar tensors with `total` (plus
plain floats such as `alpha` to log), and optionally `evaluate(model)` → (scores dict with
`mIoU`, {name: N×H×W×3 uint8 pictures}). With `evaluate` the checkpoint is saved when its mIoU
improves (the published model selection); without, every epoch.

Under torchrun every process runs the loop on its part of each epoch (DistributedDataParallel);
rank 0 alone evaluates and writes logs, TensorBoard, the metric history and checkpoints. After
every epoch the training state (`{tag}.state.pth`: weights, optimiser, schedule step, epoch, best
mIoU, every process's random generators) is written; `--resume` continues from it.
"""
import logging
import math
import random

import numpy as np
import torch
from torch.utils.data import DataLoader

from wsss.utils import distributed
from wsss.utils.device import autocast, grad_scaler, unwrap
from wsss.utils.errors import StageError
from wsss.utils.files import load_training_state, save_checkpoint, save_training_state
from wsss.utils.logs import MetricHistory, Timer, progress, setup_logging, tensorboard_writer
from wsss.utils.paths import ExperimentPaths
from wsss.utils.processes import loader_worker_setup


def set_seed(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def capture_rng():
    """The Python, NumPy, torch and CUDA generator states as tensors and numbers (no pickle)."""
    version, python_state, python_gauss = random.getstate()
    _, keys, position, has_gauss, cached_gauss = np.random.get_state()
    return {"python_version": version, "python": torch.tensor(python_state, dtype=torch.int64),
            "python_gauss": python_gauss,
            "numpy": torch.from_numpy(keys.astype(np.int64)), "numpy_position": int(position),
            "numpy_has_gauss": int(has_gauss), "numpy_gauss": float(cached_gauss),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def restore_rng(state):
    """Undo everything drawn since capture_rng() returned `state`."""
    random.setstate((state["python_version"], tuple(state["python"].tolist()), state["python_gauss"]))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_position"],
                         state["numpy_has_gauss"], state["numpy_gauss"]))
    torch.set_rng_state(state["torch"])
    for index, cuda_state in enumerate(state["cuda"][:torch.cuda.device_count()]):
        torch.cuda.set_rng_state(cuda_state, index)


def training_loader(dataset, args, device):
    """Shuffled batches without the last incomplete one. In a single process as published (the
    order drawn from torch's global generator); under torchrun this process's part of each epoch
    in batches of --batch_size / processes, its augmentation seeded per image
    (wsss.utils.distributed.SampleSeededDataset), so any process count sees the same global batches."""
    options = dict(batch_size=distributed.local_batch_size(args.batch_size), drop_last=True,
                   num_workers=args.num_workers, pin_memory=device.type == "cuda", worker_init_fn=loader_worker_setup)
    if not distributed.is_distributed():
        return DataLoader(dataset, shuffle=True, **options)
    return DataLoader(distributed.SampleSeededDataset(dataset, args.seed),
                      sampler=distributed.distributed_sampler(dataset, args.seed), **options)


def start_run(args):
    """Experiment folders and the logger of a training run; logs the resolved arguments.
    Processes other than rank 0 write nothing and log warnings only."""
    paths = ExperimentPaths()
    if not distributed.is_main():
        log = setup_logging(None)
        log.setLevel(logging.WARNING)
        return paths, log
    paths.make_dirs(args.tag)
    log = setup_logging(paths.log(args.tag))
    log.info("arguments: %s", vars(args))
    if distributed.is_distributed():
        log.info(f"torchrun: {distributed.world_size()} processes, "
                 f"{distributed.local_batch_size(args.batch_size)} images each per iteration")
    return paths, log


class _Discard:
    """Stands in for the metric history and the TensorBoard writer on processes other than rank 0."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


# signature entries added after the first saved states, and what a state without them ran with
LATER_SIGNATURE_DEFAULTS = {"eval_images": 0}


def _run_signature(args, iterations_per_epoch):
    """What a resumed run must share with the stopped one to continue its schedule and data order,
    and to compare its evaluations with the stopped run's best (the same evaluated images)."""
    return {"max_epoch": args.max_epoch, "batch_size": args.batch_size, "seed": args.seed,
            "iterations_per_epoch": iterations_per_epoch, "processes": distributed.world_size(),
            "eval_images": getattr(args, "eval_images", 0)}


def _resume(args, path, model, optimizer, scaler, iterations_per_epoch):
    """Load the training state at `path` (read by rank 0, sent to all) into the model, optimiser
    and scaler; returns it."""
    state = distributed.broadcast_object(load_training_state(path) if distributed.is_main() else None)
    expected = _run_signature(args, iterations_per_epoch)
    stopped = {**LATER_SIGNATURE_DEFAULTS, **state["run"]}
    changed = [f"{name} {stopped.get(name)} → {value}" for name, value in expected.items()
               if stopped.get(name) != value]
    if changed:
        raise StageError(f"{path}: cannot resume, the run differs from the stopped one ({', '.join(changed)}); "
                         "use the same flags and process count")
    unwrap(model).load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scaler is not None and state["scaler"] is not None:
        scaler.load_state_dict(state["scaler"])
    return state


def _mean_losses(losses):
    """Plain floats of the loss dict; tensors averaged over the processes (the global batch's loss)."""
    names = [name for name, value in losses.items() if torch.is_tensor(value)]
    stacked = distributed.all_reduce_mean(torch.stack([losses[name].detach().float() for name in names]))
    values = dict(losses)
    values.update(zip(names, stacked.tolist()))
    return values


def _format(record):
    return ", ".join(f"{key}={value:.6g}" if isinstance(value, float) else f"{key}={value}"
                     for key, value in record.items())


def fit(args, model, loader, optimizer, step_losses, evaluate=None, paths=None, log=None):
    """Train for args.max_epoch epochs (from the saved state with args.resume); returns the best
    evaluation mIoU (None without evaluate)."""
    if paths is None:
        paths, log = start_run(args)
    main = distributed.is_main()
    device = next(unwrap(model).parameters()).device
    scaler = grad_scaler(device, args.amp)
    iterations_per_epoch = len(loader)
    log_every = max(1, int(iterations_per_epoch * args.print_ratio))
    state_path = paths.training_state(args.tag)
    first_epoch, iteration, best_miou = 1, 0, None
    if args.resume:
        state = _resume(args, state_path, model, optimizer, scaler, iterations_per_epoch)
        first_epoch, iteration, best_miou = state["epoch"] + 1, state["iteration"], state["best_mIoU"]
        saved_rng = state["rng"][distributed.rank()]
        log.info(f"resumed from {state_path} after epoch {state['epoch']} (iteration {iteration})")
        del state
    history = MetricHistory(paths.metrics(args.tag), args, iteration if args.resume else None) if main else _Discard()
    writer = tensorboard_writer(paths.tensorboard(args.tag)) if main else _Discard()
    timer = Timer()
    running = {}
    model.train()
    if args.resume:
        restore_rng(saved_rng)  # last: the run continues with the generators of the stopped run
    elif distributed.is_distributed():
        torch.manual_seed(args.seed + distributed.rank())  # independent dropout in each process
    with progress(total=args.max_epoch * iterations_per_epoch, initial=iteration, desc=args.tag,
                  disable=not main) as bar:
        for epoch in range(first_epoch, args.max_epoch + 1):
            distributed.set_epoch(loader, epoch)
            for batch in loader:
                with autocast(device, args.amp):
                    losses = step_losses(model, batch, iteration)
                values = _mean_losses(losses)
                if not math.isfinite(values["total"]):
                    raise StageError(f"loss is {values['total']} at iteration {iteration + 1}; training stopped and "
                                     f"{paths.model(args.tag)} left as it was; lower --lr or check the labels")
                optimizer.zero_grad()
                if scaler is None:
                    losses["total"].backward()
                    optimizer.step()
                else:
                    scaler.scale(losses["total"]).backward()
                    scaler.step(optimizer)
                    scaler.update()
                iteration += 1
                bar.update(1)
                for name, value in values.items():
                    running.setdefault(name, []).append(value)
                if iteration % log_every == 0:
                    record = {"iteration": iteration, "epoch": epoch, "lr": optimizer.param_groups[0]["lr"]}
                    record.update({name: float(np.mean(samples)) for name, samples in running.items()})
                    record["time"] = round(timer.tick(), 3)
                    running = {}
                    history.add("train", record)
                    log.info("train " + _format(record))
                    bar.set_postfix(loss=f"{record['total']:.4f}", refresh=False)
                    for name, value in record.items():
                        if name not in ("iteration", "epoch"):
                            writer.add_scalar(f"train/{name}", value, iteration)

            if main:
                best_miou = _end_epoch(args, model, evaluate, epoch, iteration, best_miou, paths, log, history,
                                       writer, timer)
            best_miou = distributed.broadcast_object(best_miou)  # the other processes wait for rank 0 here
            rng = distributed.all_gather_objects(capture_rng())
            if main:
                save_training_state({"model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
                                     "scaler": None if scaler is None else scaler.state_dict(), "epoch": epoch,
                                     "iteration": iteration, "best_mIoU": best_miou, "rng": rng,
                                     "run": _run_signature(args, iterations_per_epoch)}, state_path)
    writer.close()
    history.finish()
    log.info(f"done: model {paths.model(args.tag)}" + ("" if best_miou is None else f", best mIoU {best_miou:.2f}%"))
    return best_miou


def _end_epoch(args, model, evaluate, epoch, iteration, best_miou, paths, log, history, writer, timer):
    """Rank 0 after each epoch: without `evaluate` save the weights; with it evaluate (the unwrapped
    model under torchrun) and save when the mIoU improves. Returns the best mIoU."""
    if evaluate is None:
        save_checkpoint(unwrap(model).state_dict(), paths.model(args.tag))
        log.info(f"epoch {epoch}: saved {paths.model(args.tag)}")
        return best_miou
    scores, pictures = evaluate(unwrap(model) if distributed.is_distributed() else model)
    improved = best_miou is None or scores["mIoU"] > best_miou
    if improved:
        best_miou = scores["mIoU"]
        save_checkpoint(unwrap(model).state_dict(), paths.model(args.tag))
    record = {"iteration": iteration, "epoch": epoch, **scores, "best_mIoU": best_miou,
              "time": round(timer.tick(), 3)}
    history.add("validation", record)
    log.info("evaluation " + _format(record) + (" (saved)" if improved else ""))
    for name, value in scores.items():
        writer.add_scalar(f"evaluation/{name}", value, iteration)
    for name, images in pictures.items():
        writer.add_images(f"evaluation/{name}", images, iteration, dataformats="NHWC")
    return best_miou
