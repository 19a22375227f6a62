"""A stage killed partway (SIGKILL to its process group, workers included) and run again writes
the same bytes as a run that was never interrupted: one test per stage family (classification
inference, the CRF label makers, the random walk, segmentation inference).

Each stage runs three times as a subprocess of its own working directory: uninterrupted (`whole`,
started alongside the interrupted one to save time), interrupted as soon as its output folder holds
a finished file, then rerun in the interrupted folder. Every file of the two output folders
(temporaries included: none may be left) must be byte-identical. A stage that finishes before it
can be killed fails the test instead of passing it vacuously.
"""
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import workspace
from stage_runner import PROGRESS_LINE, REPOSITORY, ctrl_c_as_in_a_terminal

from wsss.data.toy_voc import generate
from wsss.data.voc import read_image_ids
from wsss.utils.cli import INTERRUPTED

IMAGES = 16  # train_aug; enough work per stage to be stopped halfway


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    base = tmp_path_factory.mktemp("interruption")
    data = generate(base / "voc", seed=1, num_train=2, num_train_aug=IMAGES, num_val=2, num_test=0, min_size=112,
                    max_size=160, show_progress=False)
    workspace.build(data, base / "root")
    return base


def prepare(template, folder):
    """A working directory with the workspace's inputs (checkpoints linked, input folders copied)."""
    root = folder / "root"
    shutil.copytree(template / "root" / "experiments" / "predictions", root / "experiments" / "predictions")
    (root / "experiments" / "models").mkdir()
    for checkpoint in (template / "root" / "experiments" / "models").iterdir():
        (root / "experiments" / "models" / checkpoint.name).symlink_to(checkpoint)
    return root


def start(script, argv, cwd):
    environment = dict(os.environ, PYTHONWARNINGS="ignore", CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, str(REPOSITORY / script), *argv], cwd=cwd, env=environment,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=ctrl_c_as_in_a_terminal)


def finish(process, timeout=240):
    _, stderr = process.communicate(timeout=timeout)
    assert process.returncode == 0, stderr[-3000:]


def finished_files(folder, suffix):
    if not folder.is_dir():
        return []
    return [path for path in folder.iterdir() if path.suffix == suffix and not path.name.startswith(".")]


def kill_after_first_output(process, folder, suffix, timeout=240):
    """SIGKILL the stage's whole process group once `folder` holds a finished file."""
    deadline = time.monotonic() + timeout
    while not finished_files(folder, suffix):
        if process.poll() is not None:
            pytest.fail(f"the stage ended ({process.returncode}) before writing anything: "
                        f"{process.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail("the stage wrote nothing in time")
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL


def folder_bytes(folder):
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.mark.parametrize("script, suffix, workers", [
    ("inference_classification.py", ".npz", "1"),
    ("make_affinity_labels.py", ".png", "2"),
    ("inference_rw.py", ".npz", "1"),
    ("inference_segmentation.py", ".png", "1"),
], ids=["classification_inference", "crf_labels", "random_walk", "segmentation_inference"])
def test_killed_stage_resumes_to_identical_files(template, tmp_path, script, suffix, workers):
    argv = workspace.command(script, template / "voc")
    argv[argv.index("--num_workers") + 1] = workers
    whole_root = prepare(template, tmp_path / "whole")
    stopped_root = prepare(template, tmp_path / "stopped")
    whole = start(script, argv, whole_root)
    stopped = start(script, argv, stopped_root)
    stopped_folder = workspace.output(script, stopped_root)
    try:
        kill_after_first_output(stopped, stopped_folder, suffix)
    finally:
        if stopped.poll() is None:
            os.killpg(stopped.pid, signal.SIGKILL)
    done = len(finished_files(stopped_folder, suffix))
    assert 0 < done < IMAGES, f"killed after {done} of {IMAGES} images: too late to test a resumption"
    # what a kill in the middle of a write leaves (the kill above rarely lands inside one): a partial
    # temporary of a pending image, which the rerun must replace, not leave behind
    last = read_image_ids("train_aug", template / "voc")[-1]
    assert not (stopped_folder / f"{last}{suffix}").exists()
    (stopped_folder / f".{last}.tmp{suffix}").write_bytes(b"half a file")
    finish(whole)
    finish(start(script, argv, stopped_root))
    expected = folder_bytes(workspace.output(script, whole_root))
    assert sorted(expected) == sorted(f"{image_id}{suffix}" for image_id in read_image_ids("train_aug",
                                                                                           template / "voc"))
    assert folder_bytes(stopped_folder) == expected


def wait_for_output(process, folder, suffix, timeout=240):
    deadline = time.monotonic() + timeout
    while not finished_files(folder, suffix):
        assert process.poll() is None, f"the stage ended before writing anything: {process.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, "the stage wrote nothing in time"
        time.sleep(0.005)


def group_alive(group, within=15.0):
    """Whether any process of the group is still there after `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.1)
    return True


def messages(stderr):
    """stderr without the progress lines."""
    return [line for line in stderr.splitlines() if line.strip() and not PROGRESS_LINE.search(line)]


@pytest.mark.parametrize("script, suffix", [("inference_classification.py", ".npz"), ("make_affinity_labels.py", ".png")],
                         ids=["dataloader_workers", "pool_workers"])
def test_ctrl_c_is_one_line_exit_130_and_the_rerun_completes(template, tmp_path, script, suffix):
    argv = workspace.command(script, template / "voc")
    argv[argv.index("--num_workers") + 1] = "2"
    root = prepare(template, tmp_path)
    process = start(script, argv, root)
    folder = workspace.output(script, root)
    try:
        wait_for_output(process, folder, suffix)
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
        stderr = process.communicate(timeout=60)[1]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130
    assert messages(stderr) == [INTERRUPTED], stderr[-3000:]
    assert not group_alive(process.pid)
    finish(start(script, argv, root))
    assert len(finished_files(folder, suffix)) == IMAGES


def test_no_loader_worker_outlives_a_killed_stage(template, tmp_path):
    """SIGKILL to the stage alone (its workers are not signalled): they follow it within seconds."""
    argv = workspace.command("inference_classification.py", template / "voc")
    argv[argv.index("--num_workers") + 1] = "2"
    root = prepare(template, tmp_path)
    process = start("inference_classification.py", argv, root)
    try:
        wait_for_output(process, workspace.output("inference_classification.py", root), ".npz")
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        assert not group_alive(process.pid, within=10)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
