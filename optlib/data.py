"""Data sets with no download: shipped files checked against checksums, and generated data.

Where the data come from:

* **digits**: scikit-learn's bundled 8x8 handwritten digits (1,797 images).
* **MNIST-1D**: generated on the fly by ``mnist1d.data.make_dataset``
  (Greydanus & Kobak, 2020), 40-sample signals in 10 classes.
* **MNIST**: the 10,000 official test images (LeCun, Cortes & Burges; CC BY-SA 3.0),
  shipped in ``data/mnist/`` and split into training and validation sets.
* **Tiny Shakespeare**: ``data/tinyshakespeare/input.txt`` (public domain), the text of
  nanoGPT's ``shakespeare_char`` example.
* **Synthetic**: least squares with a chosen condition number, Gaussian classes, and a
  bag-of-words set with Zipf-distributed word frequencies.

Every shipped file is listed with its sha256 in ``data/MANIFEST.json`` and checked on load.
The wheel carries ``data/`` as ``optlib/_data/``, so an install without the repository (Colab's
``pip install`` from git, a wheel) has the data; in a clone ``data/`` beside the package is used.
Set ``OPTLIB_DATA`` to use another copy (see :func:`data_dir`).

Two ways to iterate over mini-batches:

* :func:`batches` indexes tensors that already sit on the device. For the small sets of this
  course (a few MB) this is the fast path: no worker processes, no host-to-device copy per
  batch, one ``randperm`` per epoch.
* :func:`make_loader` wraps the tensors in a ``torch.utils.data.DataLoader``. Use it when the
  data do not fit in device memory, or need per-sample work (augmentation) done by workers.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "DataSplits",
    "TextData",
    "DataIntegrityError",
    "data_dir",
    "verify_file",
    "load_digits",
    "load_mnist1d",
    "load_mnist1d_paper",
    "load_mnist",
    "load_shakespeare",
    "make_regression",
    "make_classification",
    "make_sparse_bag_of_words",
    "batches",
    "make_loader",
]

_DATA_ENV = "OPTLIB_DATA"
_MANIFEST = "MANIFEST.json"
_REPOSITORY = "https://github.com/optdl-course/optimization-for-deep-learning"


class DataIntegrityError(ValueError):
    """A shipped data file does not match the sha256 recorded in ``data/MANIFEST.json``."""


# --------------------------------------------------------------------------- containers


@dataclass
class DataSplits:
    """A training and a validation split of one data set.

    ``n_classes`` is the number of classes for classification (labels are integer tensors)
    and ``None`` for regression (targets are float tensors). ``info`` holds extra facts about
    the data, such as the planted weights of a synthetic set.
    """

    name: str
    X_train: Tensor
    y_train: Tensor
    X_val: Tensor
    y_val: Tensor
    n_classes: int | None = None
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        if len(self.X_train) != len(self.y_train):
            raise ValueError(f"X_train has {len(self.X_train)} rows but y_train has {len(self.y_train)}")
        if len(self.X_val) != len(self.y_val):
            raise ValueError(f"X_val has {len(self.X_val)} rows but y_val has {len(self.y_val)}")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input, without the batch dimension."""
        return tuple(self.X_train.shape[1:])

    @property
    def n_features(self) -> int:
        """The number of input values per sample (the product of :attr:`input_shape`)."""
        return int(np.prod(self.input_shape))

    @property
    def n_train(self) -> int:
        return len(self.X_train)

    @property
    def n_val(self) -> int:
        return len(self.X_val)

    @property
    def device(self) -> torch.device:
        return self.X_train.device

    @property
    def is_classification(self) -> bool:
        return self.n_classes is not None

    def to(self, device) -> DataSplits:
        """A copy with every tensor on ``device`` (the same object if it already is there)."""
        device = torch.device(device)
        if self.X_train.device == device and self.X_val.device == device:
            return self
        return replace(
            self,
            X_train=self.X_train.to(device),
            y_train=self.y_train.to(device),
            X_val=self.X_val.to(device),
            y_val=self.y_val.to(device),
        )

    def subset(self, n_train: int | None = None, n_val: int | None = None) -> DataSplits:
        """The first ``n_train`` training and ``n_val`` validation samples (the splits are already shuffled)."""
        n_train = self.n_train if n_train is None else _check_count("n_train", n_train, 1, self.n_train)
        n_val = self.n_val if n_val is None else _check_count("n_val", n_val, 1, self.n_val)
        return replace(
            self,
            X_train=self.X_train[:n_train],
            y_train=self.y_train[:n_train],
            X_val=self.X_val[:n_val],
            y_val=self.y_val[:n_val],
        )

    def __repr__(self) -> str:
        kind = f"{self.n_classes} classes" if self.n_classes is not None else "regression"
        return (
            f"DataSplits({self.name!r}: {self.n_train} train / {self.n_val} val, "
            f"input shape {self.input_shape}, {kind}, on {self.device})"
        )


@dataclass
class TextData:
    """A character-level text corpus: encoded training and validation streams and the vocabulary.

    ``train`` and ``val`` are 1-D ``torch.long`` tensors of character ids; ``vocab[i]`` is the
    character with id ``i``. :meth:`get_batch` draws random windows of ``block_size``
    characters, as nanoGPT does: the target of each position is the next character.
    """

    name: str
    train: Tensor
    val: Tensor
    vocab: list[str]
    block_size: int

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def device(self) -> torch.device:
        return self.train.device

    def encode(self, text: str) -> Tensor:
        index = {ch: i for i, ch in enumerate(self.vocab)}
        unknown = sorted(set(text) - set(index))
        if unknown:
            raise ValueError(f"Invalid text: characters {unknown!r} are not in the vocabulary of {self.name!r}")
        return torch.tensor([index[ch] for ch in text], dtype=torch.long)

    def decode(self, ids) -> str:
        ids = ids.tolist() if isinstance(ids, Tensor) else list(ids)
        return "".join(self.vocab[i] for i in ids)

    def to(self, device) -> TextData:
        device = torch.device(device)
        if self.train.device == device:
            return self
        return replace(self, train=self.train.to(device), val=self.val.to(device))

    def get_batch(self, split: str, batch_size: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``batch_size`` random windows ``x`` of ``block_size`` characters and their next characters ``y``."""
        if split not in ("train", "val"):
            raise ValueError(f"Invalid split: {split!r}; split must be 'train' or 'val'")
        _check_count("batch_size", batch_size, 1, None)
        stream = self.train if split == "train" else self.val
        starts = torch.randint(len(stream) - self.block_size, (batch_size,), generator=generator, device="cpu")
        offsets = torch.arange(self.block_size + 1)
        windows = stream[(starts[:, None] + offsets).to(stream.device)]
        return windows[:, :-1], windows[:, 1:]

    def __repr__(self) -> str:
        return (
            f"TextData({self.name!r}: {len(self.train):,} train / {len(self.val):,} val characters, "
            f"vocabulary of {self.vocab_size}, block_size {self.block_size}, on {self.device})"
        )


# --------------------------------------------------------------------------- shipped files


def data_dir() -> Path:
    """The folder holding the shipped data (and, under ``results/``, the saved results).

    In order: ``$OPTLIB_DATA`` if set; the copy inside the installed package
    (``optlib/_data/``: the wheel, and so ``pip install`` from git as in Colab, carries
    ``data/``); the repository's ``data/`` beside the package (a clone, or an editable
    install). optlib never downloads data.
    """
    override = os.environ.get(_DATA_ENV)
    if override:
        return Path(override).expanduser()
    packaged, repository = _packaged_data_dir(), _repository_data_dir()
    for candidate in (packaged, repository):
        if (candidate / _MANIFEST).is_file():
            return candidate
    # Neither holds the manifest: name the copy that should be there, so the error points at it.
    return packaged if packaged.is_dir() else repository


def _packaged_data_dir() -> Path:
    return Path(__file__).resolve().parent / "_data"


def _repository_data_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "data"


def _where_to_get(relative_path: str) -> str:
    return (
        f"Restore it with `git checkout -- data/{relative_path}` in the course repository, or reinstall "
        f"optlib (its package carries data/ as optlib/_data/), or copy data/{relative_path} from {_REPOSITORY}. "
        f"optlib looks for data in {data_dir()}; set {_DATA_ENV} to another copy of the course's data/ folder."
    )


def _read_manifest() -> dict[str, dict]:
    path = data_dir() / _MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"The data manifest {path} is missing. {_where_to_get(_MANIFEST)}")
    return json.loads(path.read_text())["files"]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(relative_path: str) -> Path:
    """The path of a shipped data file, after checking its sha256 against ``data/MANIFEST.json``.

    Raises ``FileNotFoundError`` when the file is missing and :class:`DataIntegrityError`
    when its content differs from the shipped one; both say how to restore it.
    """
    files = _read_manifest()
    if relative_path not in files:
        raise ValueError(
            f"Invalid relative_path: {relative_path!r} is not a shipped data file; "
            f"the shipped files are {', '.join(sorted(files))}"
        )
    path = data_dir() / relative_path
    if not path.is_file():
        raise FileNotFoundError(f"Data file {path} is missing. {_where_to_get(relative_path)}")
    expected = files[relative_path]["sha256"]
    actual = _sha256(path)
    if actual != expected:
        raise DataIntegrityError(
            f"Data file {path} is corrupted: its sha256 is {actual}, the shipped file's is {expected}. "
            f"{_where_to_get(relative_path)}"
        )
    return path


# --------------------------------------------------------------------------- helpers


def _check_count(name: str, value, low: int, high: int | None) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or value < low
        or (high is not None and value > high)
    ):
        bound = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"Invalid {name}: {value!r}; {name} must be an integer {bound}")
    return int(value)


def _check_fraction(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
        raise ValueError(f"Invalid {name}: {value!r}; {name} must be in (0, 1)")
    return float(value)


def _check_seed(seed) -> int:
    return _check_count("seed", seed, 0, 2**32 - 1)


def _split(
    name,
    X: np.ndarray,
    y: np.ndarray,
    val_fraction: float,
    seed: int,
    n_classes,
    device,
    info=None,
    shuffle: bool = True,
) -> DataSplits:
    """Shuffle (seeded) and cut into training and validation sets, as float32 inputs."""
    val_fraction = _check_fraction("val_fraction", val_fraction)
    n = len(X)
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    n_val = max(1, int(round(n * val_fraction)))
    if n_val >= n:
        raise ValueError(f"Invalid val_fraction: {val_fraction}; it leaves no training samples out of {n}")
    val_idx, train_idx = order[:n_val], order[n_val:]
    target_dtype = torch.long if n_classes is not None else torch.float32
    as_x = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32)
    as_y = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=target_dtype)
    splits = DataSplits(
        name, as_x(X[train_idx]), as_y(y[train_idx]), as_x(X[val_idx]), as_y(y[val_idx]), n_classes, info or {}
    )
    return splits.to(device) if device is not None else splits


# --------------------------------------------------------------------------- real data sets


def load_digits(val_fraction: float = 0.2, seed: int = 0, device=None) -> DataSplits:
    """scikit-learn's 1,797 8x8 digits as 64 features in [0, 1], split at random (seeded)."""
    from sklearn.datasets import load_digits as _sk_load_digits

    seed = _check_seed(seed)
    bunch = _sk_load_digits()
    return _split("digits", bunch.data / 16.0, bunch.target, val_fraction, seed, 10, device)


@lru_cache(maxsize=8)
def _mnist1d_arrays(n_samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = n_samples
    args.seed = seed
    args.train_split = 1.0  # we split ourselves, so val_fraction works as everywhere else
    # make_dataset reseeds numpy's and Python's global generators; give the caller theirs back.
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        generated = make_dataset(args)
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    X, y = generated["x"].astype(np.float32), generated["y"].astype(np.int64)
    X.setflags(write=False)
    y.setflags(write=False)
    return X, y


def load_mnist1d(n_samples: int = 4000, seed: int = 0, device=None, val_fraction: float = 0.2) -> DataSplits:
    """MNIST-1D (Greydanus & Kobak, 2020): ``n_samples`` 40-sample signals in 10 classes.

    Generated with the package's default settings, so nothing is downloaded; ``n_samples``
    is rounded down to a multiple of 10 (the generator makes equal classes). The arrays are
    cached in memory per ``(n_samples, seed)``.
    """
    n_samples = _check_count("n_samples", n_samples, 10, None)
    seed = _check_seed(seed)
    X, y = _mnist1d_arrays(n_samples, seed)
    # make_dataset already shuffled the samples with this seed.
    return _split("mnist1d", X, y, val_fraction, seed, 10, device, shuffle=False)


def load_mnist1d_paper(device=None) -> DataSplits:
    """MNIST-1D as in its paper's results: 4,000 training and 1,000 test signals.

    The generator's default settings (5,000 samples, seed 42) cut as the package cuts them,
    the first 80 % for training and the rest for testing; the "validation" set of the
    returned splits is that test set. The paper's accuracies (CNN 94 %) are on it.
    """
    from mnist1d.data import get_dataset_args

    args = get_dataset_args()
    X, y = _mnist1d_arrays(args.num_samples, args.seed)
    n_train = int(args.num_samples * args.train_split)
    # The cached arrays are read-only; the tensors get their own copies.
    as_x = lambda a: torch.tensor(a, dtype=torch.float32)
    as_y = lambda a: torch.tensor(a, dtype=torch.long)
    splits = DataSplits(
        "mnist1d (paper split)", as_x(X[:n_train]), as_y(y[:n_train]), as_x(X[n_train:]), as_y(y[n_train:]), 10, {}
    )
    return splits.to(device) if device is not None else splits


MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # of the 60k training images, the usual normalisation


@lru_cache(maxsize=1)
def _mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    images_path = verify_file("mnist/t10k-images-idx3-ubyte.gz")
    labels_path = verify_file("mnist/t10k-labels-idx1-ubyte.gz")
    with gzip.open(images_path) as handle:
        images = np.frombuffer(handle.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(labels_path) as handle:
        labels = np.frombuffer(handle.read(), np.uint8, offset=8).astype(np.int64)
    return images, labels


def load_mnist(device=None, val_fraction: float = 0.2, seed: int = 0) -> DataSplits:
    """The 10,000 official MNIST test images as ``(1, 28, 28)`` tensors, split into train and validation.

    Only the test split ships with the course (see ``data/mnist/README.md``); with the default
    ``val_fraction`` it gives 8,000 training and 2,000 validation images. Pixels are scaled to
    [0, 1] and then standardised with the usual MNIST mean and standard deviation.
    """
    seed = _check_seed(seed)
    images, labels = _mnist_arrays()
    X = (images.astype(np.float32) / 255.0 - MNIST_MEAN) / MNIST_STD
    return _split("mnist", X, labels, val_fraction, seed, 10, device)


@lru_cache(maxsize=1)
def _shakespeare_text() -> str:
    return verify_file("tinyshakespeare/input.txt").read_text(encoding="utf-8")


def load_shakespeare(block_size: int = 64, device=None) -> TextData:
    """Tiny Shakespeare as character ids, as nanoGPT's ``shakespeare_char`` prepares it.

    The vocabulary is the sorted set of the 65 characters in the text; the first 90% of the
    text is the training stream and the last 10% the validation stream.
    """
    block_size = _check_count("block_size", block_size, 1, 100_000)
    text = _shakespeare_text()
    vocab = sorted(set(text))
    lookup = np.zeros(max(map(ord, vocab)) + 1, dtype=np.int64)
    lookup[[ord(ch) for ch in vocab]] = np.arange(len(vocab))
    ids = torch.from_numpy(lookup[np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)])
    cut = int(0.9 * len(ids))
    data = TextData("tinyshakespeare", ids[:cut].clone(), ids[cut:].clone(), vocab, block_size)
    return data.to(device) if device is not None else data


# --------------------------------------------------------------------------- synthetic data sets


def make_regression(
    n_samples: int = 1000,
    n_features: int = 20,
    noise: float = 0.1,
    seed: int = 0,
    condition_number: float | None = None,
    val_fraction: float = 0.2,
    device=None,
) -> DataSplits:
    r"""Linear least squares: :math:`y = X w^\star + \varepsilon`, :math:`\varepsilon \sim \mathcal N(0, \text{noise}^2)`.

    With ``condition_number`` :math:`\kappa`, the features are correlated so that the Hessian
    of the mean squared error, :math:`\tfrac{2}{n} X^\top X`, has condition number close to
    :math:`\kappa`: standard normal data are scaled along a random orthogonal basis by
    singular values spaced geometrically from 1 down to :math:`1/\sqrt{\kappa}`. Gradient
    descent then converges at a rate set by :math:`\kappa` (the ill-conditioning chapters).

    Targets have shape ``(n, 1)``, to match ``LinearModel(n_features)``. ``info`` holds the
    planted weights ``w_true`` and the exact condition number of the training Hessian.
    """
    n_samples = _check_count("n_samples", n_samples, 2, None)
    n_features = _check_count("n_features", n_features, 1, None)
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not noise >= 0 or not np.isfinite(noise):
        raise ValueError(f"Invalid noise: {noise!r}; noise must be a finite number >= 0")
    if condition_number is not None and (
        not isinstance(condition_number, (int, float)) or not 1.0 <= condition_number < np.inf
    ):
        raise ValueError(
            f"Invalid condition_number: {condition_number!r}; condition_number must be a finite number >= 1, or None"
        )
    seed = _check_seed(seed)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, n_features))
    if condition_number is not None:
        scales = np.geomspace(1.0, 1.0 / np.sqrt(condition_number), n_features)
        basis, _ = np.linalg.qr(rng.standard_normal((n_features, n_features)))
        X = (X * scales) @ basis.T
    w_true = rng.standard_normal(n_features) / np.sqrt(n_features)
    y = (X @ w_true + noise * rng.standard_normal(n_samples))[:, None]
    splits = _split("regression", X, y, val_fraction, seed, None, device)
    eig = torch.linalg.eigvalsh(splits.X_train.double().cpu().T @ splits.X_train.double().cpu())
    splits.info.update(
        w_true=torch.as_tensor(w_true, dtype=torch.float32), hessian_condition_number=float(eig[-1] / eig[0])
    )
    return splits


def make_classification(
    n_samples: int = 1000,
    n_features: int = 20,
    n_classes: int = 3,
    seed: int = 0,
    class_separation: float = 1.5,
    val_fraction: float = 0.2,
    device=None,
) -> DataSplits:
    """Gaussian classes: class means drawn as ``N(0, class_separation^2 I)``, unit-variance noise around them."""
    n_samples = _check_count("n_samples", n_samples, 2, None)
    n_features = _check_count("n_features", n_features, 1, None)
    n_classes = _check_count("n_classes", n_classes, 2, None)
    if (
        isinstance(class_separation, bool)
        or not isinstance(class_separation, (int, float))
        or not 0 < class_separation < np.inf
    ):
        raise ValueError(
            f"Invalid class_separation: {class_separation!r}; class_separation must be a finite number > 0"
        )
    seed = _check_seed(seed)
    rng = np.random.default_rng(seed)
    means = class_separation * rng.standard_normal((n_classes, n_features))
    y = rng.integers(n_classes, size=n_samples)
    X = means[y] + rng.standard_normal((n_samples, n_features))
    splits = _split("classification", X, y, val_fraction, seed, n_classes, device)
    splits.info["class_means"] = torch.as_tensor(means, dtype=torch.float32)
    return splits


def make_sparse_bag_of_words(
    n_samples: int = 2000,
    vocab_size: int = 1000,
    zipf_exponent: float = 1.1,
    seed: int = 0,
    words_per_document: int = 20,
    val_fraction: float = 0.2,
    device=None,
) -> DataSplits:
    r"""Word counts of short documents whose word frequencies follow Zipf's law, labelled by a planted linear model.

    Word :math:`j` (ranked from 0) is drawn with probability proportional to
    :math:`(j+1)^{-s}`, ``s = zipf_exponent``, so most columns of ``X`` are almost always zero.
    The label is :math:`\mathbb 1[x^\top w^\star > \text{median}]` with
    :math:`w^\star_j \sim \mathcal N(0, 1)` for every word: rare words decide labels as much
    as frequent ones, but their gradients are seldom non-zero. That is the setting where
    Adagrad's per-coordinate step sizes pay off (Duchi, Hazan & Singer, 2011).

    ``X`` is a dense float tensor of counts (mostly zeros); ``X.to_sparse()`` gives the
    sparse form. ``info`` holds ``word_probability``, ``w_true`` and ``document_frequency``
    (the fraction of training documents containing each word).
    """
    n_samples = _check_count("n_samples", n_samples, 2, None)
    vocab_size = _check_count("vocab_size", vocab_size, 2, None)
    words_per_document = _check_count("words_per_document", words_per_document, 1, None)
    if isinstance(zipf_exponent, bool) or not isinstance(zipf_exponent, (int, float)) or not 0 <= zipf_exponent <= 10:
        raise ValueError(f"Invalid zipf_exponent: {zipf_exponent!r}; zipf_exponent must be in [0, 10]")
    seed = _check_seed(seed)
    rng = np.random.default_rng(seed)
    probability = (np.arange(1, vocab_size + 1, dtype=np.float64)) ** -float(zipf_exponent)
    probability /= probability.sum()
    X = rng.multinomial(words_per_document, probability, size=n_samples).astype(np.float32)
    w_true = rng.standard_normal(vocab_size)
    score = X @ w_true
    y = (score > np.median(score)).astype(np.int64)
    splits = _split("bag_of_words", X, y, val_fraction, seed, 2, device)
    splits.info.update(
        word_probability=torch.as_tensor(probability, dtype=torch.float32),
        w_true=torch.as_tensor(w_true, dtype=torch.float32),
        document_frequency=(splits.X_train > 0).float().mean(0).cpu(),
    )
    return splits


# --------------------------------------------------------------------------- mini-batches


def _device_generator(device: torch.device, seed: int) -> torch.Generator:
    try:
        generator = torch.Generator(device=device)
    except RuntimeError:  # a backend without its own generator: shuffle on the CPU
        generator = torch.Generator()
    return generator.manual_seed(seed)


def batches(
    X: Tensor,
    y: Tensor,
    batch_size: int | None,
    shuffle: bool = True,
    seed: int = 0,
    drop_last: bool = False,
    generator: torch.Generator | None = None,
) -> Iterator[tuple[Tensor, Tensor]]:
    """One epoch of mini-batches ``(X[idx], y[idx])`` from tensors already on the device.

    Each sample appears exactly once per epoch (the last batch is smaller unless
    ``drop_last``). ``batch_size=None`` gives the full batch. The order is a
    ``torch.randperm`` drawn on the data's device from ``generator``, or from a fresh
    generator seeded with ``seed``; pass one generator to successive epochs to get a new
    order each epoch that is still reproducible.
    """
    if len(X) != len(y):
        raise ValueError(f"X has {len(X)} rows but y has {len(y)}")
    n = len(X)
    if n == 0:
        raise ValueError("Invalid X: it has no samples")
    size = n if batch_size is None else _check_count("batch_size", batch_size, 1, None)
    if not shuffle:
        order = None
    else:
        if generator is None:
            generator = _device_generator(X.device, _check_seed(seed))
        order = torch.randperm(n, generator=generator, device=generator.device).to(X.device)
    stop = n - n % size if drop_last else n
    for start in range(0, stop, size):
        if order is None:
            yield X[start : start + size], y[start : start + size]
        else:
            index = order[start : start + size]
            yield X[index], y[index]


def make_loader(
    X: Tensor,
    y: Tensor,
    batch_size: int,
    shuffle: bool = True,
    seed: int = 0,
    drop_last: bool = False,
    num_workers: int = 0,
    pin_memory: bool | None = None,
) -> torch.utils.data.DataLoader:
    """A seeded ``DataLoader`` over ``(X, y)``, for data too large to keep on the device.

    Keep ``X`` and ``y`` on the CPU; ``pin_memory`` (default: on when CUDA is available)
    speeds up the copy of each batch to the GPU. For small sets that fit on the device,
    :func:`batches` is faster.
    """
    batch_size = _check_count("batch_size", batch_size, 1, None)
    num_workers = _check_count("num_workers", num_workers, 0, None)
    if pin_memory is None:
        pin_memory = torch.cuda.is_available() and X.device.type == "cpu"
    return torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(X, y),
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        num_workers=num_workers,
        pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(_check_seed(seed)),
    )
