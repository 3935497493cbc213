"""Drop-in to the error type: every bad input in torch.optim's own error cases fails in optlib the same way.

The cases come from ``optim_error_inputs_func`` in torch's
``torch.testing._internal.common_optimizers`` (the list torch's own test_optim
runs), so a new case in a new torch is checked here without a line of ours.
optlib must raise the same exception type as torch.optim, at the same moment
(construction or step), with a message that names the argument.
"""

from __future__ import annotations

import re
import warnings

import pytest
import torch

import optlib

common_optimizers = pytest.importorskip("torch.testing._internal.common_optimizers")

NAMES = ("SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "NAdam")
INFOS = {info.optim_cls.__name__: info for info in common_optimizers.optim_db if info.optim_cls.__name__ in NAMES}


def _cases():
    for name in NAMES:
        for error_input in INFOS[name].optim_error_inputs_func(device="cpu", dtype=torch.float32):
            if issubclass(error_input.error_type, Warning):
                continue  # warnings come from torch's Optimizer base class, which optlib's optimizers are
            yield pytest.param(name, error_input, id=f"{name}-{error_input.optimizer_error_input.desc}")


CASES = list(_cases())


def _raise(cls, error_input):
    inp = error_input.optimizer_error_input
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optimizer = cls(inp.params, **inp.kwargs)
        if error_input.error_on == common_optimizers.OptimizerErrorEnum.STEP_ERROR:
            optimizer.step()


def test_torchs_error_cases_are_found():
    assert len(CASES) >= 30, "torch's error-input lists were not read"


@pytest.mark.parametrize("name,error_input", CASES)
def test_same_exception_type_as_torch(name, error_input):
    with pytest.raises(error_input.error_type, match=error_input.error_regex):
        _raise(getattr(torch.optim, name), error_input)  # the case is what torch says it is
    with pytest.raises(error_input.error_type) as raised:
        _raise(getattr(optlib, name), error_input)
    # The message names the argument: the first identifier torch's own message names.
    words = re.findall(r"[A-Za-z_]+(?:\\?\[\d\\?\])?", error_input.error_regex)
    named = [w.replace("\\", "") for w in words if w.replace("\\", "") in str(error_input.optimizer_error_input.kwargs)]
    for word in named[:1]:
        assert word in str(raised.value), f"optlib's message {str(raised.value)!r} does not name {word!r}"


@pytest.mark.parametrize("name", NAMES + ("NesterovAdamW", "GradientDescent"))
def test_a_single_tensor_as_params_is_a_type_error(name):
    # Iterating a tensor would yield its rows; torch.optim raises TypeError, and so does optlib.
    with pytest.raises(TypeError, match="params"):
        getattr(optlib, name)(torch.zeros(3, requires_grad=True))
