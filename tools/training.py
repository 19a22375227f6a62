"""The one training loop of every trainer (classifier, AffinityNet, DeepLabv3+).

A stage gives `step_losses(model, batch, iteration)` → dict of scalar tensors with `total` (plus
plain floats such as `alpha` to log), and optionally `evaluate(model)` → (scores dict with
`mIoU`, {name: N×H×W×3 uint8 pictures}). With `evaluate` the checkpoint is saved when its mIoU
improves (the published model selection); without, every epoch.
"""
import random

import numpy as np
import torch
from tqdm import tqdm

from tools.cli import StageError
from tools.device import unwrap
from tools.experiment import ExperimentPaths
from tools.files import save_checkpoint
from tools.logs import MetricHistory, Timer, setup_logging, tensorboard_writer


def set_seed(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def start_run(args):
    """Experiment folders and the logger of a training run; logs the resolved arguments."""
    paths = ExperimentPaths()
    paths.make_dirs(args.tag)
    log = setup_logging(paths.log(args.tag))
    log.info("arguments: %s", vars(args))
    return paths, log


def _format(record):
    return ", ".join(f"{key}={value:.6g}" if isinstance(value, float) else f"{key}={value}"
                     for key, value in record.items())


def fit(args, model, loader, optimizer, step_losses, evaluate=None, paths=None, log=None):
    """Train for args.max_epoch epochs; returns the best evaluation mIoU (None without evaluate)."""
    if paths is None:
        paths, log = start_run(args)
    iterations_per_epoch = len(loader)
    log_every = max(1, int(iterations_per_epoch * args.print_ratio))
    history = MetricHistory(paths.metrics(args.tag), args)
    writer = tensorboard_writer(paths.tensorboard(args.tag))
    timer = Timer()
    best_miou = None
    running = {}
    iteration = 0
    model.train()
    with tqdm(total=args.max_epoch * iterations_per_epoch, desc=args.tag, dynamic_ncols=True) as progress:
        for epoch in range(1, args.max_epoch + 1):
            for batch in loader:
                losses = step_losses(model, batch, iteration)
                total = losses["total"]
                if not torch.isfinite(total):
                    raise StageError(f"loss is {total.item()} at iteration {iteration + 1}; training stopped and "
                                     f"{paths.model(args.tag)} left as it was; lower --lr or check the labels")
                optimizer.zero_grad()
                total.backward()
                optimizer.step()
                iteration += 1
                progress.update(1)
                for name, value in losses.items():
                    running.setdefault(name, []).append(value.item() if torch.is_tensor(value) else value)
                if iteration % log_every == 0:
                    record = {"iteration": iteration, "epoch": epoch, "lr": optimizer.param_groups[0]["lr"]}
                    record.update({name: float(np.mean(values)) for name, values in running.items()})
                    record["time"] = round(timer.tick(), 3)
                    running = {}
                    history.add("train", record)
                    log.info("train " + _format(record))
                    progress.set_postfix(loss=f"{record['total']:.4f}")
                    for name, value in record.items():
                        if name not in ("iteration", "epoch"):
                            writer.add_scalar(f"train/{name}", value, iteration)

            if evaluate is None:
                save_checkpoint(unwrap(model).state_dict(), paths.model(args.tag))
                log.info(f"epoch {epoch}: saved {paths.model(args.tag)}")
                continue
            scores, pictures = evaluate(model)
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
    writer.close()
    history.finish()
    log.info(f"done: model {paths.model(args.tag)}" + ("" if best_miou is None else f", best mIoU {best_miou:.2f}%"))
    return best_miou
