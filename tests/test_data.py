import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from optlib import data as D

DATA = Path(D.__file__).resolve().parents[1] / "data"


@pytest.fixture
def data_copy(tmp_path, monkeypatch):
    """A private copy of the shipped data (without the results), used through OPTLIB_DATA."""
    copy = tmp_path / "data"
    shutil.copytree(DATA, copy, ignore=shutil.ignore_patterns("results"))
    monkeypatch.setenv("OPTLIB_DATA", str(copy))
    D._mnist_arrays.cache_clear()
    D._shakespeare_text.cache_clear()
    yield copy
    D._mnist_arrays.cache_clear()
    D._shakespeare_text.cache_clear()


def test_manifest_lists_every_shipped_file_with_its_checksum():
    listed = json.loads((DATA / "MANIFEST.json").read_text())["files"]
    on_disk = {
        p.relative_to(DATA).as_posix()
        for p in DATA.rglob("*")
        if p.is_file() and p.name != "MANIFEST.json" and p.relative_to(DATA).parts[0] != "results"
    }
    assert set(listed) == on_disk
    for relative, entry in listed.items():
        content = (DATA / relative).read_bytes()
        assert hashlib.sha256(content).hexdigest() == entry["sha256"], relative
        assert len(content) == entry["bytes"], relative


def test_corrupted_file_raises_data_integrity_error(data_copy):
    target = data_copy / "mnist" / "t10k-labels-idx1-ubyte.gz"
    content = bytearray(target.read_bytes())
    content[100] ^= 0xFF
    target.write_bytes(bytes(content))
    with pytest.raises(
        D.DataIntegrityError, match=r"t10k-labels-idx1-ubyte\.gz is corrupted.*git checkout -- data/mnist/"
    ):
        D.load_mnist()
    assert issubclass(D.DataIntegrityError, ValueError)


def test_missing_file_says_how_to_restore_it(data_copy):
    (data_copy / "tinyshakespeare" / "input.txt").unlink()
    with pytest.raises(
        FileNotFoundError, match=r"input\.txt is missing.*git checkout -- data/tinyshakespeare/input\.txt.*OPTLIB_DATA"
    ):
        D.load_shakespeare()


def test_unknown_file_is_rejected():
    with pytest.raises(ValueError, match="relative_path"):
        D.verify_file("mnist/train-images-idx3-ubyte.gz")


def test_data_dir_prefers_the_packaged_copy_then_the_repository(tmp_path, monkeypatch):
    monkeypatch.delenv("OPTLIB_DATA", raising=False)
    packaged = tmp_path / "site-packages" / "optlib" / "_data"  # a wheel install
    repository = tmp_path / "clone" / "data"  # a clone or an editable install
    monkeypatch.setattr(D, "_packaged_data_dir", lambda: packaged)
    monkeypatch.setattr(D, "_repository_data_dir", lambda: repository)

    assert D.data_dir() == repository, "with no copy anywhere, the error names the repository's data/"
    repository.mkdir(parents=True)
    (repository / "MANIFEST.json").write_text('{"files": {}}')
    assert D.data_dir() == repository
    packaged.mkdir(parents=True)
    assert D.data_dir() == repository, "only a folder with its manifest is a copy of the data"
    (repository / "MANIFEST.json").unlink()
    assert D.data_dir() == packaged, "with no manifest anywhere, the error names the packaged copy"
    (packaged / "MANIFEST.json").write_text('{"files": {}}')
    assert D.data_dir() == packaged
    (repository / "MANIFEST.json").write_text('{"files": {}}')
    assert D.data_dir() == packaged, "an installed wheel uses its own copy, whatever sits beside site-packages"
    monkeypatch.setenv("OPTLIB_DATA", str(tmp_path / "mine"))
    assert D.data_dir() == tmp_path / "mine"


def test_data_dir_in_this_checkout_is_the_repository_data(monkeypatch):
    # The tests run against a clone (editable install): its data/ is the one the other tests check.
    monkeypatch.delenv("OPTLIB_DATA", raising=False)
    assert D.data_dir() == DATA


def test_digits_shapes_scaling_and_seeded_split():
    a, b, c = D.load_digits(seed=0), D.load_digits(seed=0), D.load_digits(seed=1)
    assert a.input_shape == (64,) and a.n_train + a.n_val == 1797 and a.n_classes == 10
    assert a.n_val == round(0.2 * 1797)
    assert 0.0 <= float(a.X_train.min()) and float(a.X_train.max()) <= 1.0
    assert a.y_train.dtype == torch.long
    assert torch.equal(a.X_train, b.X_train) and not torch.equal(a.y_train, c.y_train)


def test_mnist1d_generated_deterministically_without_touching_global_state():
    np.random.seed(123)
    expected_next = np.random.rand()
    np.random.seed(123)
    a = D.load_mnist1d(n_samples=500, seed=0)
    assert np.random.rand() == expected_next  # make_dataset's global reseed was undone
    b = D.load_mnist1d(n_samples=500, seed=0)
    c = D.load_mnist1d(n_samples=500, seed=1)
    assert a.input_shape == (40,) and a.n_train == 400 and a.n_val == 100
    assert torch.equal(a.X_train, b.X_train) and not torch.equal(a.X_train, c.X_train)
    assert set(a.y_train.tolist()) == set(range(10))


def test_mnist_shapes_and_split():
    splits = D.load_mnist()
    assert splits.n_train == 8000 and splits.n_val == 2000
    assert splits.input_shape == (1, 28, 28)
    assert torch.bincount(splits.y_train, minlength=10).min() > 600  # every digit is present
    assert abs(float(splits.X_train.mean())) < 0.1  # standardised


def test_shakespeare_vocabulary_split_and_batches():
    text = D.load_shakespeare(block_size=16)
    assert text.vocab_size == 65 and text.vocab[0] == "\n"
    assert len(text.train) + len(text.val) == 1_115_394
    assert len(text.train) == int(0.9 * 1_115_394)
    assert text.decode(text.train[:14]) == "First Citizen:"
    assert torch.equal(text.encode("First"), text.train[:5])
    x, y = text.get_batch("train", 8, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (8, 16)
    assert torch.equal(x[:, 1:], y[:, :-1])  # each target is the next character


def test_regression_condition_number_is_planted():
    splits = D.make_regression(n_samples=2000, n_features=10, noise=0.0, seed=0, condition_number=100.0)
    assert 50 < splits.info["hessian_condition_number"] < 200
    w = splits.info["w_true"]
    assert torch.allclose(splits.X_train @ w[:, None], splits.y_train, atol=1e-4)
    well = D.make_regression(n_samples=2000, n_features=10, seed=0)
    assert well.info["hessian_condition_number"] < 3


def test_classification_and_bag_of_words():
    splits = D.make_classification(n_samples=300, n_features=5, n_classes=4, seed=0)
    assert splits.input_shape == (5,) and splits.n_classes == 4 and int(splits.y_train.max()) <= 3
    bow = D.make_sparse_bag_of_words(n_samples=1000, vocab_size=500, zipf_exponent=1.1, seed=0)
    frequency = bow.info["document_frequency"]
    assert frequency[0] > 0.5 and frequency[-100:].mean() < 0.05  # Zipf: a few common words, many rare ones
    assert torch.all(bow.X_train.sum(1) == 20)
    assert 0.4 < bow.y_train.float().mean() < 0.6


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: D.load_digits(val_fraction=1.5), "val_fraction"),
        (lambda: D.load_mnist1d(n_samples=5), "n_samples"),
        (lambda: D.make_regression(condition_number=0.5), "condition_number"),
        (lambda: D.make_sparse_bag_of_words(zipf_exponent=-1), "zipf_exponent"),
        (lambda: D.load_shakespeare(block_size=0), "block_size"),
    ],
)
def test_bad_arguments_name_themselves(call, name):
    with pytest.raises(ValueError, match=name):
        call()


@pytest.mark.parametrize("batch_size, drop_last", [(7, False), (7, True), (None, False), (50, False)])
def test_batches_cover_every_sample_once(batch_size, drop_last):
    X = torch.arange(50.0)[:, None]
    y = torch.arange(50)
    sizes, seen = [], []
    for xb, yb in D.batches(X, y, batch_size, seed=1, drop_last=drop_last):
        assert torch.equal(xb[:, 0].long(), yb)  # inputs and labels stay paired
        sizes.append(len(yb))
        seen += yb.tolist()
    full = batch_size or 50
    assert all(size == full for size in sizes[:-1]) and 0 < sizes[-1] <= full
    expected = 49 if drop_last else 50
    assert len(seen) == len(set(seen)) == expected


def test_batches_are_seeded_and_a_shared_generator_reshuffles():
    X, y = torch.randn(20, 2), torch.arange(20)
    order = lambda **kw: torch.cat([yb for _, yb in D.batches(X, y, 6, **kw)]).tolist()
    assert order(seed=0) == order(seed=0) != order(seed=1)
    assert order(shuffle=False) == list(range(20))
    generator = torch.Generator().manual_seed(0)
    assert order(generator=generator) != order(generator=generator)


def test_make_loader_is_seeded():
    X, y = torch.randn(30, 3), torch.arange(30)
    epoch = lambda: torch.cat([yb for _, yb in D.make_loader(X, y, 8, seed=2)]).tolist()
    assert epoch() == epoch() and sorted(epoch()) == list(range(30))


def test_splits_subset_and_to():
    splits = D.load_digits()
    small = splits.subset(100, 50)
    assert (small.n_train, small.n_val) == (100, 50)
    assert small.to("cpu") is small
    with pytest.raises(ValueError, match="n_train"):
        splits.subset(n_train=10**6)


def test_mnist1d_paper_split_is_the_packages_own():
    from mnist1d.data import get_dataset_args, make_dataset

    paper = D.load_mnist1d_paper()
    reference = make_dataset(get_dataset_args())
    assert paper.n_train == 4000 and paper.n_val == 1000
    assert np.array_equal(paper.X_train.numpy(), reference["x"].astype(np.float32))
    assert np.array_equal(paper.y_train.numpy(), reference["y"]) and np.array_equal(
        paper.y_val.numpy(), reference["y_test"]
    )
    assert np.array_equal(paper.X_val.numpy(), reference["x_test"].astype(np.float32))
