"""benchmarks/step_time.py (and scalar_loads.py, sharded_step.py, state_placement.py) run end to end and print what issue 11 asks of them.

Only the tiny model, so the times say nothing: the test checks the table's shape,
the goal lines and the confidence interval of the trial-by-trial ratio.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def step_time():
    return _load("step_time")


def test_median_interval_is_the_order_statistics_that_cover_the_median(step_time):
    # n = 15: P(Binomial(15, 1/2) <= 3) = 0.018 <= 0.025 < P(<= 4) = 0.059, so the 4th
    # smallest and the 4th largest value.
    assert step_time.median_interval([float(v) for v in range(15)]) == (7.0, 3.0, 11.0)
    # Too few rounds for 95%: the whole range, not a narrower interval than the data allow.
    assert step_time.median_interval([3.0, 1.0, 2.0, 5.0, 4.0]) == (3.0, 1.0, 5.0)


def test_goal_1_is_met_only_by_a_median_ratio_of_at_most_one_and_says_what_the_interval_shows(step_time):
    assert step_time.goal_1_verdict(0.97, 0.95, 0.99).startswith("met: faster")
    assert step_time.goal_1_verdict(1.0, 0.98, 1.01).startswith("met by the median; level")
    assert step_time.goal_1_verdict(1.004, 0.99, 1.02).startswith("not met by the median, but level")
    assert step_time.goal_1_verdict(1.004, 1.0, 1.02).startswith("not met by the median, but level")
    assert step_time.goal_1_verdict(1.02, 1.01, 1.03).startswith("not met: slower")


def test_every_path_steps_its_own_copy_of_the_parameters_and_gradients(step_time):
    """On the CPU .to(device) returns the very tensor: without a copy every path updated one
    shared set of parameters, and the copies' placements, which the trials vary, were one."""
    import random

    shapes = step_time.MODELS["100K"][:3]
    optimizers = step_time.make_optimizers(
        "AdamW", "AdamW", step_time.ADAMW_OPTIONS, shapes, torch.device("cpu"), random.Random(0)
    )
    tensors = [
        t
        for opt in optimizers.values()
        if isinstance(opt, torch.optim.Optimizer)
        for group in opt.param_groups
        for p in group["params"]
        for t in (p, p.grad)
    ]
    assert len(tensors) == 7 * 2 * len(shapes)  # six paths and the reference's second copy
    assert len({t.data_ptr() for t in tensors}) == len(tensors)
    # Allocated in an order shuffled each trial, not always the same.
    orders = {
        tuple(
            step_time.make_optimizers(
                "AdamW", "AdamW", step_time.ADAMW_OPTIONS, shapes, torch.device("cpu"), random.Random(seed)
            )
        )
        for seed in range(4)
    }
    assert len(orders) > 1


def test_the_yardstick_counts_both_copies_of_torchs_kernel_where_there_are_two(step_time):
    first, second = [1.0, 2.0, 3.0], [3.0, 4.0, 5.0]
    samples = {("torch", "fused"): first, step_time.REFERENCE: second}
    median, each_round = step_time.yardstick(samples, ("torch", "fused"))
    assert median == 3.0 and each_round == [2.0, 3.0, 4.0]
    assert step_time.yardstick(samples, step_time.REFERENCE) == (4.0, second)  # one copy: itself
    assert step_time.trial_ratios([2.0, 2.0, 6.0, 6.0], [1.0, 1.0, 2.0, 4.0], trials=2) == [2.0, 2.0]


def test_many_trials_are_summed_up_by_their_range_not_listed(step_time):
    assert step_time._by_trial([1.0, 0.9, 1.1]).endswith("over 3 trials (1.000, 0.900, 1.100)")
    line = step_time._by_trial([1.0 + k / 100 for k in range(40)])
    assert line.endswith("over 40 trials (from 1.000 to 1.390)"), line


def test_the_script_prints_the_table_and_the_goal(step_time, monkeypatch, capsys):
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "step_time.py",
            "--models",
            "100K",
            "--methods",
            "NesterovAdamW",
            "--repeats",
            "3",
            "--trials",
            "2",
            "--warmup",
            "1",
            "--goal-trials",
            "3",
            "--goal-repeats",
            "2",
        ],
    )
    step_time.main()
    out = capsys.readouterr().out
    assert re.search(r"100K: 0\.1M float32 parameters in \d+ tensors", out)
    # The limit comes from probes timed in the same rounds as the steps it bounds.
    assert re.search(
        r"bandwidth measured in each method's rounds \(GB/s\): NesterovAdamW triad .*: \d+\.\d, in place .*: \d+\.\d",
        out,
    )
    header = next(line for line in out.splitlines() if line.startswith("method"))
    for column in ("torch loop", "torch foreach", "torch fused", "optlib loop", "optlib foreach", "optlib fused"):
        assert column in header
    row = next(line for line in out.splitlines() if line.startswith("NesterovAdamW"))
    assert len(re.findall(r"\d+\.\d", row)) == 7, row  # the limit and six paths, in ms
    # Goal 1 from its own run of the three fused paths, its interval over the trials (fresh
    # allocations), the unit whose ratios are independent.
    goal = re.search(
        r"goal 1, 100K, head to head \(3 trials x 2 steps of the three fused paths alone\): .* = (\d\.\d{3}) "
        r".*trial by trial \(each a fresh allocation\): median (\d\.\d+), "
        r"95% CI (\d\.\d+) to (\d\.\d+) over 3 trials \(\d\.\d{3}, \d\.\d{3}, \d\.\d{3}\)$",
        out,
        flags=re.MULTILINE,
    )
    assert goal, out
    ratio, middle, low, high = map(float, goal.groups())
    assert ratio == middle and low <= middle <= high
    # What placement and noise alone do to a ratio: torch's kernel against a copy of itself, same rounds.
    noise = re.search(r"noise, +100K: .* median (\d\.\d+), 95% CI (\d\.\d+) to (\d\.\d+) over 3 trials", out)
    assert noise, out
    middle, low, high = map(float, noise.groups())
    assert low <= middle <= high
    assert "compile seconds of each fused kernel variant" in out


def test_scalar_loads_times_each_variant_beside_torchs_kernel(capsys):
    threads = torch.get_num_threads()
    ratios = _load("scalar_loads").main(["--elements", "1000", "--rounds", "2", "--threads", "1"])
    assert torch.get_num_threads() == threads  # the script's thread count does not leak into the caller
    out = capsys.readouterr().out
    assert list(ratios) == [f"{k} of 7 scalars as tensors" for k in (0, 1, 3, 7)] + [
        "7 scalars in one tensor",
        "torch._fused_adamw_",
    ]
    assert ratios["torch._fused_adamw_"] == 1.0 and all(r > 0 for r in ratios.values())
    assert len(re.findall(r"ms +\d+\.\d{3}x torch\._fused_adamw_", out)) == 6, out


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a CUDA machine the script runs the checks themselves")
def test_gpu_checks_script_refuses_clearly_without_a_gpu(tmp_path):
    """benchmarks/gpu_checks.sh is the one command a lent GPU machine runs; where torch sees no
    GPU it must stop at once, saying so, rather than run the suite or benchmark on the CPU."""
    import subprocess

    result = subprocess.run(
        ["bash", str(BENCHMARKS / "gpu_checks.sh")],
        env={"PATH": "/usr/bin:/bin", "OUT": str(tmp_path), "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "sees no CUDA device here" in result.stderr
    assert not any(tmp_path.iterdir()), "it wrote logs of checks it could not run"


def test_sharded_step_prints_each_strategy_and_path_beside_the_loop(capsys, monkeypatch):
    """benchmarks/sharded_step.py times optimizer.step() under torch.distributed; on a tiny
    model only the table's shape is checked (the times say nothing)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # spawned processes import the worker by name
    import sharded_step

    argv = ["--width", "8", "--depth", "2", "--steps", "3", "--strategies", "fsdp", "--paths", "loop", "fused"]
    table = sharded_step.main(argv)
    printed = capsys.readouterr().out
    assert set(table) == {("fsdp", "loop"), ("fsdp", "fused")} and all(t > 0 for t in table.values())
    assert "optlib.AdamW, 2 x Linear(8, 8) (144 parameters), 2 CPU processes" in printed
    assert re.search(r"^strategy\s+loop\s+fused\s+fused / loop$", printed, flags=re.MULTILINE)
    ratio = table[("fsdp", "fused")] / table[("fsdp", "loop")]
    assert re.search(rf"^fsdp\s+[\d.]+\s+[\d.]+\s+{ratio:.2f}x$", printed, flags=re.MULTILINE)


def test_state_placement_times_each_placement_beside_torchs_kernel(capsys):
    """benchmarks/state_placement.py on parameters just above the size from which optlib places
    state: the table's rows and where each path's moments start (the times say nothing)."""
    ratios = _load("state_placement").main(["--rows", "300", "--cols", "300", "--copies", "2", "--rounds", "2"])
    printed = capsys.readouterr().out
    assert ratios["torch AdamW fused"] == 1.0 and all(r > 0 for r in ratios.values())
    rows = {line.split("  ")[0]: line for line in printed.splitlines()}
    for path in ("optlib AdamW fused", "optlib NesterovAdamW fused", "torch AdamW fused, state placed as optlib's"):
        assert "m +0x400 v +0x800" in rows[path], printed
    assert "m +0x0 v +0x0" in rows["optlib AdamW fused, state at θ's offset"], printed
