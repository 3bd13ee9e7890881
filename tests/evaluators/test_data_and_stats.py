import gzip
import struct

import numpy as np
import pytest

from evaluators.data import DatasetUnavailable, list_datasets, load_task
from evaluators.fidelity import PRESETS, get_fidelity


def test_mnist1d_is_generated_locally_with_a_validation_split():
    task = load_task("mnist1d", n_samples=400, seed=1)
    assert task.info.input_shape == (1, 40) and task.info.num_classes == 10
    assert task.sizes() == {"train": 320, "val": 80, "test": 100}
    assert abs(float(task.x_train.mean())) < 0.1
    again = load_task("mnist1d", n_samples=400, seed=1)
    assert bool((again.x_val == task.x_val).all())


def test_digits_are_images():
    task = load_task("digits")
    assert task.info.input_shape == (1, 8, 8)
    assert task.x_train.shape[1:] == (1, 8, 8)


def _write_idx(path, array, magic):
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape))
        f.write(array.astype(np.uint8).tobytes())


def test_fashion_mnist_reads_idx_files_from_a_data_dir(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 50), ("t10k", 20)):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 28, 28)), 2051)
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10, 2049)
    task = load_task("fashion-mnist", data_dir=str(tmp_path))
    assert task.info.input_shape == (1, 28, 28) and task.info.num_classes == 10
    assert task.sizes()["test"] == 20 and sum(task.sizes().values()) == 70


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path):
    with pytest.raises(DatasetUnavailable, match="apt-get install dataset-fashion-mnist"):
        load_task("fashion-mnist", data_dir=str(tmp_path))


def test_cifar_without_data_dir_and_unknown_names_are_clear():
    with pytest.raises(DatasetUnavailable, match="--data-dir"):
        load_task("cifar10")
    with pytest.raises(ValueError, match="mnist1d"):
        load_task("imagenet")
    assert "digits" in list_datasets()


def test_a_cifar_folder_without_the_files_names_the_folder_torchvision_looks_for(tmp_path):
    (tmp_path / "data_batch_1").write_text("not a pickle")  # files in the wrong place
    with pytest.raises(DatasetUnavailable) as err:
        load_task("cifar10", data_dir=str(tmp_path))
    assert str(err.value) == (f"cifar10 not found under {str(tmp_path)!r}: torchvision's folder "
                              "'cifar-10-batches-py' is missing there or fails its checksums "
                              "(add --download to fetch it)")
    assert "download=True" not in str(err.value)  # torchvision's API advice is not a CLI flag


def test_a_failed_cifar_download_is_one_line_with_the_folder_and_the_way_round_it(tmp_path, monkeypatch):
    import urllib.error

    import torchvision.datasets

    class Offline(torchvision.datasets.CIFAR100):  # what torchvision does with no network
        def __init__(self, *args, **kwargs):
            raise urllib.error.URLError(OSError(-2, "Name or service not known"))

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", Offline)
    with pytest.raises(DatasetUnavailable) as err:
        load_task("cifar100", data_dir=str(tmp_path), download=True)
    assert str(err.value) == (f"downloading cifar100 into {str(tmp_path)!r} failed ([Errno -2] Name or "
                              "service not known); put torchvision's 'cifar-100-python' folder there instead")


def test_fidelity_presets_and_cost():
    assert set(PRESETS) == {"low", "medium", "high"}
    low, high = get_fidelity("low"), get_fidelity("high")
    assert low.learner_epochs(2) < high.learner_epochs(2)
    assert low.learner_epochs(2) == 2 * low.learner_epochs(1)
    with pytest.raises(ValueError, match="low"):
        get_fidelity("ultra")
