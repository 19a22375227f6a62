"""How the stages' worker processes behave: they leave Ctrl-C to their parent (which prints the
one line and stops them), clean up on SIGTERM, and never outlive their parent, also when it is
killed with SIGKILL and cannot stop them itself."""
import ctypes
import signal
import sys

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


def loader_worker_setup(worker_id):
    """`worker_init_fn` of every DataLoader: its workers only read, and a worker whose parent has
    died cannot flush its queue to it and exit cleanly, so it is killed outright."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(signal.SIGKILL)
