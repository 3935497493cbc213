"""benchmarks/step_time.py runs end to end and prints what issue 11 asks of it.

Only the tiny model, so the times say nothing: the test checks the table's shape,
the goal lines and the confidence interval of the round-by-round ratio.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "step_time.py"


@pytest.fixture(scope="module")
def step_time():
    spec = importlib.util.spec_from_file_location("step_time", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_median_interval_is_the_order_statistics_that_cover_the_median(step_time):
    # n = 15: P(Binomial(15, 1/2) <= 3) = 0.018 <= 0.025 < P(<= 4) = 0.059, so the 4th
    # smallest and the 4th largest value.
    assert step_time.median_interval([float(v) for v in range(15)]) == (7.0, 3.0, 11.0)
    # Too few rounds for 95%: the whole range, not a narrower interval than the data allow.
    assert step_time.median_interval([3.0, 1.0, 2.0, 5.0, 4.0]) == (3.0, 1.0, 5.0)


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
    goal = re.search(
        r"goal 1, 100K: .* = (\d\.\d\d) .*median (\d\.\d+), 95% CI (\d\.\d+) to (\d\.\d+) over 6 rounds in 2 trials",
        out,
    )
    assert goal, out
    middle, low, high = map(float, goal.groups()[1:])
    assert low <= middle <= high
    assert "compile seconds of each fused kernel variant" in out
