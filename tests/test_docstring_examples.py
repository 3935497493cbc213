"""Every example in optlib's optimizer docstrings runs and prints what it says."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [f"optlib.optim.{name}" for name in ("sgd", "adagrad", "rmsprop", "adam", "adamw", "nadam", "nesterov_adamw")]
MODULES += ["optlib.schedules"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0, f"{name} has no example"
    assert result.failed == 0
