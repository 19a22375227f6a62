"""Run records: the log file, the metric history (JSON), TensorBoard, resolved arguments."""
import logging
import sys
import time

from tqdm import tqdm

from wsss.utils.files import read_json, write_json

NON_TERMINAL_INTERVAL = 30.0  # seconds between progress lines when the output is a file or a CI log


class _PlainLines:
    """A stream for tqdm that writes each of its redraws as a plain line (no carriage returns or
    escape codes), for logs that are files rather than terminals."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text):
        for line in text.replace("\r", "\n").split("\n"):
            line = line.strip()
            if line and not line.startswith("\x1b"):
                self.stream.write(line + "\n")

    def flush(self):
        self.stream.flush()


def progress(iterable=None, total=None, desc=None, leave=True, disable=False, initial=0, stream=None):
    """A tqdm progress bar: redrawn in place on a terminal; elsewhere one plain line every
    NON_TERMINAL_INTERVAL seconds (and at the end), so a log file holds a few readable lines."""
    stream = stream or sys.stderr
    if stream.isatty():
        return tqdm(iterable, total=total, desc=desc, leave=leave, disable=disable, initial=initial, file=stream,
                    dynamic_ncols=True)
    return tqdm(iterable, total=total, desc=desc, leave=leave, disable=disable, initial=initial,
                file=_PlainLines(stream),
                mininterval=NON_TERMINAL_INTERVAL, ncols=100, ascii=True)


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
