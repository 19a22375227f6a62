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


CUDA_MISSING = "no CUDA device visible to torch; the CUDA half runs on a GPU machine (scripts/gpu_check.sh)"


@pytest.fixture(params=["cpu", "cuda"])
def device(request):
    """Each device a device-parametrised test runs on: the CPU, and CUDA when torch sees a GPU
    (skipped otherwise). On CUDA, TF32 matrix products and convolutions are off during the test, so
    that float32 results compare with a float64 reference at float32 tolerances."""
    import torch

    if request.param == "cpu":
        yield torch.device("cpu")
        return
    if not torch.cuda.is_available():
        pytest.skip(CUDA_MISSING)
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
