import numpy as np
import pytest
import torch

import optlib
from optlib.device import describe_device, experiment_size, pick_device, seed_everything


@pytest.mark.parametrize("value", ["tiny", "quick", "full", " Quick "])
def test_size_override(monkeypatch, value):
    monkeypatch.setenv("OPTLIB_SIZE", value)
    assert experiment_size() == value.strip().lower()


def test_size_default_follows_cuda(monkeypatch):
    monkeypatch.delenv("OPTLIB_SIZE", raising=False)
    assert experiment_size() == ("full" if torch.cuda.is_available() else "quick")


def test_invalid_size_names_variable_and_choices(monkeypatch):
    monkeypatch.setenv("OPTLIB_SIZE", "huge")
    with pytest.raises(ValueError, match=r"OPTLIB_SIZE='huge'.*'tiny', 'quick', 'full'"):
        experiment_size()


def test_pick_device_is_usable():
    device = pick_device()
    assert torch.zeros(1, device=device).device.type == device.type


def test_describe_device_prints_once(monkeypatch, capsys):
    monkeypatch.setattr(optlib.device, "_described", False)
    monkeypatch.setenv("OPTLIB_SIZE", "quick")
    first = describe_device()
    second = describe_device()
    assert first == second
    assert capsys.readouterr().out.count("Device:") == 1
    if pick_device().type == "cpu":
        assert "No GPU found: running the quick size of the experiments; saved full-size results" in first


def test_seed_everything_repeats_all_generators():
    import random

    seed_everything(3)
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    seed_everything(3)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_seed_everything_rejects_bad_seed(seed):
    with pytest.raises(ValueError, match="seed"):
        seed_everything(seed)
