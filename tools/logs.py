"""Run records: the log file, the metric history (JSON), TensorBoard, resolved arguments."""
import logging
import sys
import time

from tqdm import tqdm

from tools.files import read_json, write_json


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

    def __init__(self, path, args, resume_iteration=None):
        """With `resume_iteration` (a resumed run) the records of the stopped run up to that
        iteration are kept, and later ones (after its last training state) dropped."""
        self.path = path
        self.data = {"args": vars(args), "train": [], "validation": []}
        if resume_iteration is not None and path.exists():
            previous = read_json(path)
            for kind in ("train", "validation"):
                self.data[kind] = [record for record in previous.get(kind, [])
                                   if record.get("iteration", 0) <= resume_iteration]

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
