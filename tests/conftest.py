"""Shared fixtures: a tiny toy VOC dataset, generated once per test session."""
import pytest

from wsss.data.toy_voc import generate


@pytest.fixture(scope="session")
def toy_voc(tmp_path_factory):
    """A few images per split, small sizes: enough for command-line smoke runs."""
    return generate(tmp_path_factory.mktemp("toy_voc"), seed=0, num_train=4, num_train_aug=8, num_val=4,
                    num_test=2, min_size=64, max_size=96, show_progress=False)


@pytest.fixture
def one_thread(monkeypatch):
    """Torch on one thread here and in the commands a test starts: on a busy 2-core machine two
    spinning threads make small training runs many times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield
    torch.set_num_threads(threads)
