"""Shared fixtures: a tiny toy VOC dataset, generated once per test session."""
import pytest

from tools.toy_voc import generate


@pytest.fixture(scope="session")
def toy_voc(tmp_path_factory):
    """A few images per split, small sizes: enough for command-line smoke runs."""
    return generate(tmp_path_factory.mktemp("toy_voc"), seed=0, num_train=4, num_train_aug=8, num_val=4,
                    num_test=2, min_size=64, max_size=96, show_progress=False)
