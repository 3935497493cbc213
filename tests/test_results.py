import json
import math

import pytest
import torch

import optlib
from optlib import results as R


@pytest.fixture
def results_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTLIB_RESULTS", str(tmp_path))
    return tmp_path


def test_results_dir_follows_environment(results_dir):
    assert R.RESULTS_DIR == results_dir == R.results_dir()


def test_default_results_dir_is_under_data(monkeypatch):
    monkeypatch.delenv("OPTLIB_RESULTS", raising=False)
    monkeypatch.delenv("OPTLIB_DATA", raising=False)
    assert R.results_dir().parts[-2:] == ("data", "results")


def test_save_load_round_trip(results_dir):
    payload = {"curve": [1.0, 0.5, math.nan], "tensor": torch.tensor([1.0, 2.0]), "pair": (1, 2)}
    path = R.save_results("unit_test", payload, seeds=range(5), config={"lr": 1e-3}, size="full")
    assert path == results_dir / "unit_test.json"
    json.loads(path.read_text())  # strict JSON: no NaN literals
    record = R.load_results("unit_test")
    assert record["payload"] == {"curve": [1.0, 0.5, None], "tensor": [1.0, 2.0], "pair": [1, 2]}
    meta = record["meta"]
    assert meta["seeds"] == [0, 1, 2, 3, 4] and meta["config"] == {"lr": 1e-3} and meta["size"] == "full"
    assert meta["torch"] == torch.__version__ and meta["optlib"] == optlib.__version__
    assert meta["device"] == (torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu")
    assert not list(results_dir.glob("*.partial"))


def test_missing_results_are_none(results_dir):
    assert R.load_results("never_saved") is None


def test_note_names_device_torch_seeds_and_date():
    record = {
        "meta": {
            "device": "NVIDIA H100 80GB HBM3",
            "torch": "2.13.0",
            "seeds": [0, 1, 2, 3, 4],
            "size": "full",
            "created_utc": "2026-11-24T10:00:00+00:00",
        }
    }
    assert R.results_note(record) == (
        "Saved full-size results: NVIDIA H100 80GB HBM3, torch 2.13.0, seeds 0\u20134, run on 2026-11-24."
    )
    record["meta"]["seeds"] = [3]
    assert "seed 3," in R.results_note(record)
    record["meta"]["seeds"] = [0, 2, 7]
    assert "seeds 0, 2, 7," in R.results_note(record)


@pytest.mark.parametrize("name", ["", "../escape", "a b", "x.json"])
def test_bad_names_are_rejected(results_dir, name):
    with pytest.raises(ValueError, match="name"):
        R.save_results(name, {}, seeds=[0], config={})


def test_corrupt_file_is_reported(results_dir):
    (results_dir / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken.json"):
        R.load_results("broken")
