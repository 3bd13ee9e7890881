"""Datasets as tasks: train / validation / test tensors kept on one device for the whole search.

Every loader returns float32 inputs of shape ``(N, *input_shape)`` standardised with the
training split's statistics, and int64 labels. Nothing is downloaded unless asked: MNIST-1D is
generated locally, Fashion-MNIST is read from Debian's ``dataset-fashion-mnist`` IDX files or a
``data_dir``, CIFAR from a ``data_dir`` (``download=True`` to fetch it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from spaces.base import TaskInfo

__all__ = ["Task", "DatasetUnavailable", "list_datasets", "load_task", "FASHION_MNIST_DIR"]

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
_DATASETS = ("mnist1d", "fashion-mnist", "cifar10", "cifar100", "digits", "synthetic-ctr", "criteo")


class DatasetUnavailable(RuntimeError):
    """The dataset's files are missing; the message says how to get them."""


@dataclass(frozen=True)
class Task:
    """A dataset split three ways, on one device. ``info`` is all a model builder needs."""

    name: str
    info: TaskInfo
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def device(self) -> torch.device:
        return self.x_train.device

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}


def list_datasets() -> list[str]:
    return list(_DATASETS)


def load_task(name: str, *, device: str | torch.device = "cpu", data_dir: str | None = None,
              n_samples: int | None = None, seed: int = 0, download: bool = False,
              val_fraction: float = 0.2, test_rows: int | None = None) -> Task:
    """Load dataset ``name`` as a :class:`Task` on ``device``.

    ``n_samples`` caps the number of training+validation samples (MNIST-1D generates exactly
    that many, plus a quarter as many test samples); ``seed`` fixes generation and the
    validation split, which is carved from the training split. ``test_rows`` (CTR datasets
    only) sets the size of the test split.
    """
    if name in ("synthetic-ctr", "criteo"):  # hashed categorical fields: evaluators/ctr
        from evaluators.ctr.criteo import load_ctr_task

        return load_ctr_task(name, device=device, data_dir=data_dir, n_samples=n_samples,
                             seed=seed, val_fraction=val_fraction, test_rows=test_rows)
    if test_rows is not None:
        raise ValueError(f"test_rows applies to the CTR datasets only, not {name!r}")
    loaders = {"mnist1d": _mnist1d, "fashion-mnist": _fashion_mnist, "cifar10": _cifar,
               "cifar100": _cifar, "digits": _digits}
    if name not in loaders:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(_DATASETS)}")
    x, y, x_test, y_test = loaders[name](name=name, data_dir=data_dir, n_samples=n_samples,
                                         seed=seed, download=download)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    if n_samples is not None and name != "mnist1d":
        order = order[:n_samples]
    n_val = max(1, int(round(len(order) * val_fraction)))
    val_idx, train_idx = order[:n_val], order[n_val:]
    mean = x[train_idx].mean(axis=0, keepdims=True)
    std = x[train_idx].std() + 1e-8  # one scalar: keeps relative channel scales

    def to(a: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype).to(device)

    def norm(a: np.ndarray) -> torch.Tensor:
        return to(((a - mean) / std).astype(np.float32))

    return Task(name=name, info=TaskInfo(tuple(int(d) for d in x.shape[1:]), int(y.max()) + 1),
                x_train=norm(x[train_idx]), y_train=to(y[train_idx], torch.long),
                x_val=norm(x[val_idx]), y_val=to(y[val_idx], torch.long),
                x_test=norm(x_test), y_test=to(y_test, torch.long))


def _mnist1d(*, n_samples: int | None, seed: int, **_):
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    n_train = n_samples or 4000
    args.num_samples = int(n_train * 1.25)
    args.train_split = n_train / args.num_samples
    args.seed = 42 + seed
    state = np.random.get_state()  # make_dataset seeds numpy's global generator
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(state)
    x, x_test = data["x"][:, None, :], data["x_test"][:, None, :]
    return (x.astype(np.float32), data["y"].astype(np.int64),
            x_test.astype(np.float32), data["y_test"].astype(np.int64))


def _digits(*, seed: int, **_):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images[:, None] / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    order = np.random.default_rng(1234).permutation(len(y))  # fixed test split
    n_test = len(y) // 5
    test, rest = order[:n_test], order[n_test:]
    return x[rest], y[rest], x[test], y[test]


def _fashion_mnist(*, data_dir: str | None, **_):
    root = Path(data_dir) if data_dir else Path(FASHION_MNIST_DIR)
    files = {"train-images": None, "train-labels": None, "t10k-images": None, "t10k-labels": None}
    for key in files:
        hits = sorted(p for p in root.rglob(f"{key}*") if p.is_file()) if root.is_dir() else []
        if not hits:
            raise DatasetUnavailable(
                f"Fashion-MNIST IDX file '{key}-idx*' not found under {root}: install Debian's "
                "package (apt-get install dataset-fashion-mnist) or pass --data-dir pointing at "
                "a folder with the four IDX files")
        files[key] = hits[0]
    x, y = _read_idx(files["train-images"]), _read_idx(files["train-labels"])
    xt, yt = _read_idx(files["t10k-images"]), _read_idx(files["t10k-labels"])
    return ((x[:, None] / 255.0).astype(np.float32), y.astype(np.int64),
            (xt[:, None] / 255.0).astype(np.float32), yt.astype(np.int64))


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) with torchvision's parser."""
    import gzip
    import tempfile

    from torchvision.datasets.mnist import read_sn3_pascalvincent_tensor

    if path.suffix == ".gz":
        with gzip.open(path, "rb") as src, tempfile.NamedTemporaryFile(delete=False) as dst:
            dst.write(src.read())
        try:
            return read_sn3_pascalvincent_tensor(dst.name, strict=False).numpy()
        finally:
            os.unlink(dst.name)
    return read_sn3_pascalvincent_tensor(str(path), strict=False).numpy()


def _cifar(*, name: str, data_dir: str | None, download: bool, **_):
    from torchvision.datasets import CIFAR10, CIFAR100

    if data_dir is None:
        raise DatasetUnavailable(f"{name} needs --data-dir (a folder with torchvision's {name} "
                                 "files; add --download to fetch them there)")
    cls = CIFAR10 if name == "cifar10" else CIFAR100
    try:
        train = cls(data_dir, train=True, download=download)
        test = cls(data_dir, train=False, download=download)
    except RuntimeError:  # torchvision: "Dataset not found or corrupted. You can use download=True …"
        raise DatasetUnavailable(f"{name} not found under {data_dir!r}: torchvision's folder "
                                 f"{cls.base_folder!r} is missing there or fails its checksums "
                                 "(add --download to fetch it)") from None
    except OSError as err:  # --download without a network: urllib's URLError is an OSError
        reason = getattr(err, "reason", None) or err
        raise DatasetUnavailable(f"downloading {name} into {data_dir!r} failed ({reason}); put "
                                 f"torchvision's {cls.base_folder!r} folder there instead") from None
    def arr(ds: CIFAR10) -> np.ndarray:
        return (ds.data.transpose(0, 3, 1, 2) / 255.0).astype(np.float32)
    return (arr(train), np.asarray(train.targets, np.int64), arr(test),
            np.asarray(test.targets, np.int64))
