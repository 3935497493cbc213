"""Every example in optlib's optimizer docstrings runs and prints what it says."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [f"optlib.optim.{name}" for name in ("sgd", "adagrad", "rmsprop", "adam", "adamw", "nadam", "nesterov_adamw")]
MODULES += ["optlib.schedules", "optlib.scale"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0, f"{name} has no example"
    assert result.failed == 0


def test_every_optimizer_class_has_an_example():
    import torch

    import optlib.optim

    classes = [getattr(optlib.optim, name) for name in optlib.optim.__all__]
    optimizers = [c for c in classes if isinstance(c, type) and issubclass(c, torch.optim.Optimizer)]
    assert len(optimizers) >= 8
    missing = [c.__name__ for c in optimizers if ">>>" not in (c.__doc__ or "")]
    assert not missing, f"no runnable example in the docstring of {missing}"
