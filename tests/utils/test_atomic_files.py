"""The atomic writers of wsss/utils/files.py, the output-folder check and the one-line error messages."""
import fcntl
import io
import multiprocessing
import os
import signal
import time
import zipfile

import numpy as np
import pytest
import torch

from wsss.utils.errors import StageError, one_line
from wsss.utils.processes import exit_on_sigterm
from wsss.utils.files import (
    atomic_path,
    check_writable,
    load_label_png,
    save_checkpoint,
    save_label_png,
    write_text,
)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            open(temporary, "w").write("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old" and sorted(path.name for path in tmp_path.iterdir()) == ["a.txt"]


def test_the_temporary_of_a_dead_writer_is_reused(tmp_path):
    (tmp_path / ".a.tmp.png").write_bytes(b"left by a writer killed mid-write")
    save_label_png(tmp_path / "a.png", np.full((3, 4), 7))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.png"]
    assert load_label_png(tmp_path / "a.png").tolist() == [[7] * 4] * 3


def test_a_live_writer_keeps_its_temporary(tmp_path):
    """A temporary under another writer's lock is not touched; this writer takes a unique name."""
    busy = tmp_path / ".a.tmp.txt"
    busy.write_text("being written")
    with open(busy) as stream:
        fcntl.flock(stream, fcntl.LOCK_EX)
        write_text(tmp_path / "a.txt", "mine")
        assert busy.read_text() == "being written"
    assert sorted(path.name for path in tmp_path.iterdir()) == [".a.tmp.txt", "a.txt"]
    assert (tmp_path / "a.txt").read_text() == "mine"


def _write_until_terminated(target, ready):
    exit_on_sigterm()
    with atomic_path(target) as temporary:
        open(temporary, "w").write("half")
        ready.set()
        time.sleep(30)


def test_a_pool_worker_terminated_mid_write_removes_its_temporary(tmp_path):
    context = multiprocessing.get_context("fork")
    ready = context.Event()
    worker = context.Process(target=_write_until_terminated, args=(tmp_path / "a.txt", ready))
    worker.start()
    assert ready.wait(30)
    os.kill(worker.pid, signal.SIGTERM)
    worker.join(30)
    assert worker.exitcode == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []


def test_checkpoints_are_byte_identical_and_name_no_temporary(tmp_path):
    state = {"weight": torch.arange(6.0).reshape(2, 3)}
    save_checkpoint(state, tmp_path / "one" / "x.pth")
    time.sleep(1.1)
    save_checkpoint(state, tmp_path / "two" / "x.pth")
    first = (tmp_path / "one" / "x.pth").read_bytes()
    assert first == (tmp_path / "two" / "x.pth").read_bytes()
    assert not any(".tmp" in name for name in zipfile.ZipFile(io.BytesIO(first)).namelist())


def test_check_writable_creates_nothing_and_names_the_folder(tmp_path):
    check_writable(tmp_path / "new" / "deeper")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("")
    with pytest.raises(StageError, match=r"deeper: output folder not writable \(.*file is not a folder\); pass"):
        check_writable(tmp_path / "file" / "deeper", "pass another --pred_dir")


def test_one_line_of_multi_line_and_worker_messages():
    assert one_line(StageError("a.pth: cannot load (first\n\tsecond\n)")) == "a.pth: cannot load (first second )"
    reraised = StageError("Caught StageError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
                          "last):\n  File \"x.py\", line 1\nwsss.utils.errors.StageError: x.jpg: unreadable image (broken\n"
                          "data); replace it\n")
    assert one_line(reraised) == "x.jpg: unreadable image (broken data); replace it"
