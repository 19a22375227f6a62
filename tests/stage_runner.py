"""Running the stage scripts as a user would: a subprocess in a working directory of its own."""
import os
import pathlib
import re
import signal
import subprocess
import sys

REPOSITORY = pathlib.Path(__file__).resolve().parents[1]
# a progress bar's line in a log ("desc:  50%|####   | 2/4 [00:01<00:01, ...]")
PROGRESS_LINE = re.compile(r"\|\s*\d+/\d+ \[")


def ctrl_c_as_in_a_terminal():
    """Popen's preexec_fn for the Ctrl-C tests: SIGINT back to its default in the child, so that
    Python turns it into KeyboardInterrupt. A background job (`pytest ... &`) starts with SIGINT
    ignored, and an ignored signal stays ignored through exec."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_stage(script, *args, cwd, check=True, timeout=300):
    command = [sys.executable, str(REPOSITORY / script), *map(str, args)]
    environment = dict(os.environ, PYTHONWARNINGS="ignore", CUDA_VISIBLE_DEVICES="")
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=environment)
    if check and result.returncode != 0:
        raise AssertionError(f"{script} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


TINY_TRAINING = ["--pretrained", "none", "--batch_size", "2", "--max_epoch", "1", "--image_size", "64",
                 "--min_image_size", "48", "--max_image_size", "80", "--num_workers", "0"]
