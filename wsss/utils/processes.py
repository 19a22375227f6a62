"""How the stages' worker processes behave: they leave Ctrl-C to their parent (which prints the
one line and stops them), clean up on SIGTERM, and never outlive their parent, also when it is
killed with SIGKILL and cannot stop them itself."""
import contextlib
import ctypes
import multiprocessing
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # Linux prctl option: the signal a process gets when its parent dies


def exit_on_sigterm():
    """A worker terminated while writing (the pool stops on another worker's error) removes its
    temporary file before exiting, instead of dying mid-write."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def die_with_parent(sig):
    """Ask Linux to send `sig` to this process when its parent dies (no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig)
    except (OSError, AttributeError):
        pass


def pool_worker_setup():
    """Initializer of the per-image pools' workers, which write outputs: on SIGTERM (also sent when
    the stage dies) they remove their temporary file and exit."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_on_sigterm()
    die_with_parent(signal.SIGTERM)


TERMINATE_GRACE_S = 5.0


@contextlib.contextmanager
def worker_pool(num_workers):
    """A fork pool of `num_workers` output-writing workers (pool_worker_setup). Leaving the block
    normally closes the pool and waits for the workers to finish their tasks; an error (also one
    while waiting) terminates them and is re-raised."""
    pool = multiprocessing.get_context("fork").Pool(num_workers, initializer=pool_worker_setup)
    try:
        yield pool
        pool.close()
        pool.join()
    except BaseException:
        terminate(pool)
        raise


def terminate(pool):
    """pool.terminate() (SIGTERM: a writer removes its temporary file and exits), then SIGKILL for
    the workers still alive after TERMINATE_GRACE_S, and after as long again it stops waiting.

    An idle worker can miss the SIGTERM and stay blocked on the pool's task queue (Python drops a
    signal that reaches a freshly forked process before its after-fork clean-up; idle workers were
    also seen to miss it later), and terminate() would wait for it for ever. A worker killed in the
    middle of a long write leaves its temporary file, which the next write of that file reuses."""
    stopper = threading.Thread(target=pool.terminate, daemon=True)
    stopper.start()
    stopper.join(TERMINATE_GRACE_S)
    deadline = time.monotonic() + TERMINATE_GRACE_S
    while stopper.is_alive() and time.monotonic() < deadline:  # terminate() no longer replaces workers
        for worker in list(pool._pool):
            if worker.is_alive():
                worker.kill()
        stopper.join(0.5)


def loader_worker_setup(worker_id):
    """`worker_init_fn` of every DataLoader: its workers only read, and a worker whose parent has
    died cannot flush its queue to it and exit cleanly, so it is killed outright."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(signal.SIGKILL)
