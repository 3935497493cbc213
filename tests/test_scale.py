"""Tests of optlib.scale: the cost model checked against live optimizers and the ZeRO paper's figures."""

from __future__ import annotations

import math
import time

import pytest
import torch

import optlib
from optlib import scale

GB = 1e9


def _stepped(method: str, shape=(6, 5)) -> tuple[torch.optim.Optimizer, torch.nn.Parameter]:
    spec = scale.METHODS[method]
    p = torch.nn.Parameter(torch.randn(shape, generator=torch.Generator().manual_seed(0)))
    optimizer = getattr(optlib, spec.optimizer)([p], lr=1e-3, **spec.kwargs)
    p.grad = torch.ones_like(p)
    optimizer.step()
    return optimizer, p


@pytest.mark.parametrize("method", list(scale.METHODS))
def test_state_tensor_counts_are_what_the_optimizers_store(method):
    optimizer, _ = _stepped(method)
    assert scale.count_state_tensors(optimizer) == scale.METHODS[method].state_tensors


@pytest.mark.parametrize("method", ["Momentum", "Adagrad", "RMSprop", "Adam", "AdamW", "NAdam"])
def test_the_torch_counterparts_store_as_many(method):
    spec = scale.METHODS[method]
    p = torch.nn.Parameter(torch.zeros(4, 3))
    optimizer = getattr(torch.optim, spec.optimizer)([p], lr=1e-3, **spec.kwargs)
    p.grad = torch.ones_like(p)
    optimizer.step()
    assert scale.count_state_tensors(optimizer) == spec.state_tensors


def test_state_is_created_by_the_first_step():
    p = torch.nn.Parameter(torch.zeros(3))
    optimizer = optlib.Adam([p])
    assert scale.count_state_tensors(optimizer) == 0
    p.grad = torch.ones_like(p)
    optimizer.step()
    assert scale.count_state_tensors(optimizer) == 2


def test_state_bytes_of_adam_are_two_copies_of_the_parameters_plus_the_step():
    optimizer, p = _stepped("Adam", shape=(40, 25))
    step = optimizer.state[p]["step"]
    assert scale.state_bytes(optimizer) == 2 * p.numel() * 4 + step.numel() * step.element_size()
    sgd, _ = _stepped("SGD")
    assert scale.state_bytes(sgd) == 0


def test_bytes_per_parameter_in_float32_and_bfloat16():
    got = {m: scale.step_bytes_per_param(m) for m in scale.METHODS}
    assert got == {
        "SGD": 12,
        "Momentum": 20,
        "Adagrad": 20,
        "RMSprop": 20,
        "Adam": 28,
        "AdamW": 28,
        "NAdam": 28,
        "NesterovAdamW": 28,
    }
    assert scale.step_bytes_per_param("AdamW", bytes_per_number=2) == 14


def test_arithmetic_intensity_of_every_step_is_below_one_flop_per_byte():
    # The point of the roofline section: an optimizer step is memory-bound on any hardware
    # whose ridge point is above 1 FLOP/byte (every CPU and GPU of the last decade).
    for method in scale.METHODS:
        intensity = scale.step_flops_per_param(method) / scale.step_bytes_per_param(method)
        assert 0 < intensity < 1, method


def test_step_time_limit_is_bytes_over_bandwidth():
    assert scale.step_time_limit("AdamW", 10_000_000, 50e9) == pytest.approx(28 * 1e7 / 50e9)
    assert scale.step_time_limit("SGD", 1000, 1e9, bytes_per_number=2) == pytest.approx(6 * 1000 / 1e9)


def test_zero_paper_figure_1():
    # Rajbhandari et al. 2020, Figure 1: Ψ = 7.5B, N_d = 64, K = 12 (mixed-precision Adam):
    # 120 GB replicated, 31.4 GB (P_os), 16.6 GB (P_os+g), 1.9 GB (P_os+g+p) per device.
    expected = {0: 120.0, 1: 31.4, 2: 16.6, 3: 1.9}
    for stage, gb in expected.items():
        total = scale.training_memory(7_500_000_000, "Adam", "mixed", zero_stage=stage, world_size=64)["total"]
        assert round(total / GB, 1) == gb, stage


def test_zero_paper_gpt2_needs_24_gb():
    # Section 3.1: GPT-2 with 1.5B parameters needs at least 24 GB for its model states (16 bytes each).
    held = scale.training_memory(1_500_000_000, "Adam", "mixed")
    assert held["total"] == pytest.approx(24 * GB)
    assert held["master weights"] + held["optimizer state"] == pytest.approx(12 * 1.5 * GB)


def test_memory_by_method_and_precision():
    n = 1_000_000
    assert scale.training_memory(n, "SGD", "fp32")["total"] == 8 * n
    assert scale.training_memory(n, "Momentum", "fp32")["optimizer state"] == 4 * n
    assert scale.training_memory(n, "AdamW", "fp32")["optimizer state"] == 8 * n
    assert scale.training_memory(n, "SGD", "mixed")["master weights"] == 4 * n
    eight_bit = scale.training_memory(n, "AdamW", "mixed, 8-bit states")["optimizer state"]
    full = scale.training_memory(n, "AdamW", "mixed")["optimizer state"]
    # Dettmers et al. 2022: 8-bit states take about a quarter of the 32-bit states' memory.
    assert eight_bit / full == pytest.approx(0.25, rel=1e-2)
    assert eight_bit == pytest.approx(2 * n * (1 + 4 / 2048))


@pytest.mark.parametrize("method", ["SGD", "Momentum", "AdamW"])
def test_each_zero_stage_holds_no_more_and_world_size_one_changes_nothing(method):
    n = 1_000_000
    totals = [scale.training_memory(n, method, "mixed", zero_stage=s, world_size=8)["total"] for s in scale.ZERO_STAGES]
    assert totals == sorted(totals, reverse=True)
    assert totals[3] == pytest.approx(totals[0] / 8)
    alone = {scale.training_memory(n, method, "mixed", zero_stage=s, world_size=1)["total"] for s in scale.ZERO_STAGES}
    assert len(alone) == 1


@pytest.mark.parametrize(
    "call, argument",
    [
        (lambda: scale.training_memory(0), "n_params"),
        (lambda: scale.training_memory(10, zero_stage=4), "zero_stage"),
        (lambda: scale.training_memory(10, world_size=0), "world_size"),
        (lambda: scale.training_memory(10, world_size=2.0), "world_size"),
        (lambda: scale.training_memory(10, precision="fp8"), "precision"),
        (lambda: scale.training_memory(10, method="Lion"), "method"),
        (lambda: scale.step_bytes_per_param("Adam", bytes_per_number=0), "bytes_per_number"),
        (lambda: scale.step_time_limit("Adam", 10, math.nan), "bandwidth"),
        (lambda: scale.measure_bandwidth(n_elements=-1), "n_elements"),
        (lambda: scale.measure_peak_flops(repeats=0), "repeats"),
    ],
)
def test_bad_input_names_the_argument(call, argument):
    with pytest.raises(ValueError, match=argument):
        call()


def test_measurements_return_plausible_rates():
    bandwidth = scale.measure_bandwidth(n_elements=1 << 16, repeats=3)
    flops = scale.measure_peak_flops(n=64, repeats=3)
    # Any machine that runs the tests moves more than 100 MB/s and computes more than 10 MFLOP/s;
    # nothing runs faster than 100 TB/s or 10 PFLOP/s.
    assert 1e8 < bandwidth < 1e14
    assert 1e7 < flops < 1e16


def test_scale_names_are_reachable_from_optlib():
    assert optlib.training_memory is scale.training_memory
    assert optlib.measure_bandwidth is scale.measure_bandwidth


def test_operator_traffic_counts_reads_writes_and_new_tensors():
    a, b = torch.zeros(1000), torch.ones(1000)
    with scale.OperatorTraffic() as traffic:
        a.add_(b)  # read a, b; write a
    assert traffic.bytes == 12 * 1000
    with scale.OperatorTraffic() as traffic:
        c = a * b  # read a, b; write the new c
        a.view(10, 100)  # a view moves nothing
        torch._foreach_mul_([a, c], 0.5)  # read and write both
    assert traffic.bytes == 12 * 1000 + 16 * 1000
    assert traffic.operators["mul"] == 1 and traffic.operators["_foreach_mul_"] == 1


def test_operator_traffic_of_sgd_and_of_torchs_fused_adamw():
    def per_param(make):
        params = [torch.nn.Parameter(torch.randn(500)) for _ in range(2)]
        for p in params:
            p.grad = torch.randn_like(p)
        optimizer = make(params)
        optimizer.step()
        with scale.OperatorTraffic() as traffic:
            optimizer.step()
        return traffic.bytes / 1000

    assert per_param(lambda ps: optlib.SGD(ps, lr=0.1)) == scale.step_bytes_per_param("SGD")
    # One kernel: the 28 bytes of the formula, plus the gradients its schema declares mutable.
    fused = per_param(lambda ps: torch.optim.AdamW(ps, fused=True))
    assert fused == pytest.approx(scale.step_bytes_per_param("AdamW") + 4, abs=0.1)  # + step counters
    assert per_param(lambda ps: torch.optim.AdamW(ps, foreach=False)) > 2 * fused


def test_step_timer_records_each_step_of_a_training_run_and_only_the_step():
    model = optlib.MLP(8, hidden=(16,), out_features=3, seed=0)
    data = optlib.make_classification(n_samples=200, n_features=8, n_classes=3, seed=0)
    optimizer = optlib.AdamW(model.parameters(), lr=1e-2)
    timer = scale.StepTimer(optimizer)
    # 5 ms inside every step (a hook that runs after the timer's start), 3 ms in every loss
    # evaluation outside it: the timer must count the first and not the second.
    optimizer.register_step_pre_hook(lambda *_: time.sleep(0.005))

    def slow_loss(output, target):
        time.sleep(0.003)
        return torch.nn.functional.cross_entropy(output, target)

    history = optlib.train(model, optimizer, data, epochs=2, batch_size=50, loss_fn=slow_loss, progress=False)
    assert len(timer.seconds) == history.n_steps == 8
    assert all(s >= 0.005 for s in timer.seconds)
    assert timer.total + 0.003 * history.n_steps <= history.epochs["time"][-1]
    optimizer_ms, rest_ms = timer.per_step_ms(history.epochs["time"][-1])
    assert optimizer_ms == pytest.approx(1e3 * sum(timer.seconds[1:]) / 7)  # the first step left out
    assert optimizer_ms >= 5 and rest_ms >= 3
    assert rest_ms == pytest.approx(1e3 * (history.epochs["time"][-1] - timer.total) / 8)
    timer.remove()
    optimizer.step()
    assert len(timer.seconds) == history.n_steps, "a removed timer still records"
    with pytest.raises(TypeError, match="optimizer"):
        scale.StepTimer(model)
    with pytest.raises(ValueError, match="at least 2 recorded steps"):
        scale.StepTimer(optimizer).per_step_ms(1.0)
