"""Run records: the log file, the metric history (JSON), TensorBoard, resolved arguments."""
import logging
import sys
import time

from tqdm import tqdm

from tools.files import write_json


class TqdmHandler(logging.Handler):
    """Console output that does not break tqdm progress bars."""

    def emit(self, record):
        tqdm.write(self.format(record), file=sys.stdout)


def setup_logging(log_path=None, name="puzzlecam"):
    """Console + file logging, set up once per script."""
    logger = logging.getLogger(name)
    logger.handlers.clear()
    logger.setLevel(logging.INFO)
    logger.propagate = False
    formatter = logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S")
    handlers = [TqdmHandler()]
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="a"))
    for handler in handlers:
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    return logger


class MetricHistory:
    """`experiments/data/{tag}.json`: the arguments and the appended train/validation records."""

    def __init__(self, path, args):
        self.path = path
        self.data = {"args": vars(args), "train": [], "validation": []}

    def add(self, kind, record):
        self.data[kind].append(record)
        write_json(self.path, self.data)

    def finish(self):
        """Mark the run complete (the pipeline runner skips finished training stages)."""
        self.data["finished"] = True
        write_json(self.path, self.data)


def tensorboard_writer(folder):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(folder))


class Timer:
    def __init__(self):
        self.start = time.time()

    def tick(self):
        now = time.time()
        elapsed, self.start = now - self.start, now
        return elapsed
