"""Tests of the course benchmark: fair grids, tuning, seeds, statistics, JSON, and a tiny run."""

from __future__ import annotations

import json
import math
import sys

import matplotlib
import pytest

matplotlib.use("Agg")

from optlib import benchmark as bm  # noqa: E402
from optlib.benchmark import _stats  # noqa: E402
from optlib.benchmark.__main__ import main  # noqa: E402
from optlib.benchmark._problems import BenchmarkProblem  # noqa: E402

# ----------------------------------------------------------------------------- grids


@pytest.mark.parametrize("size", list(bm.SIZE_SETTINGS))
def test_every_optimizer_gets_the_same_grid_size_and_span(size):
    points, decades = bm.SIZE_SETTINGS[size]["grid_points"], bm.SIZE_SETTINGS[size]["grid_decades"]
    for spec in bm.OPTIMIZERS.values():
        grid = bm.lr_grid(spec.default_lr, points, decades)
        assert len(grid) == points
        assert math.log10(grid[-1] / grid[0]) == pytest.approx(decades)
        # centred on the optimizer's own default, in log space
        assert math.sqrt(grid[0] * grid[-1]) == pytest.approx(spec.default_lr)
        assert grid == sorted(grid)


def test_grid_centres_follow_conventions():
    assert bm.OPTIMIZERS["SGD"].default_lr == 1e-1
    assert bm.OPTIMIZERS["Adam"].default_lr == 1e-3
    assert bm.lr_grid(1e-3, 5, 4.0) == pytest.approx([1e-5, 1e-4, 1e-3, 1e-2, 1e-1])


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(default_lr=0.0, points=3, decades=2), "default_lr"),
        (dict(default_lr=1e-3, points=0, decades=2), "points"),
        (dict(default_lr=1e-3, points=3, decades=-1), "decades"),
    ],
)
def test_grid_rejects_bad_input(kwargs, name):
    with pytest.raises(ValueError, match=name):
        bm.lr_grid(**kwargs)


# ----------------------------------------------------------------------------- tuning


def _rec(lr, loss, diverged=False):
    return {"lr": lr, "diverged": diverged, "final": {"val_loss": loss}}


def test_select_lr_picks_the_lowest_final_validation_loss():
    assert bm.select_lr([_rec(1e-3, 0.9), _rec(1e-2, 0.4), _rec(1e-1, 0.7)]) == 1e-2


def test_select_lr_scores_diverged_and_nan_runs_as_inf():
    # The diverged run reports a small loss from before it blew up; it must not win.
    search = [_rec(1e-3, 0.9), _rec(1e-2, 0.1, diverged=True), _rec(1e-1, math.nan)]
    assert bm.select_lr(search) == 1e-3


def test_select_lr_breaks_ties_towards_the_smaller_lr():
    assert bm.select_lr([_rec(1e-1, 0.5), _rec(1e-2, 0.5), _rec(1e-3, 0.6)]) == 1e-2


def test_select_lr_when_everything_diverged_returns_the_smallest():
    assert bm.select_lr([_rec(1.0, math.inf, True), _rec(0.1, math.inf, True)]) == 0.1
    with pytest.raises(ValueError, match="search"):
        bm.select_lr([])


def _toy_problem(calls):
    """Loss (log10 lr + 2)^2 + 0.01 * seed: best lr 1e-2; lr > 0.5 diverges."""

    def runner(cfg, spec, lr, seed):
        calls.append((lr, seed))
        loss = (math.log10(lr) + 2) ** 2 + 0.01 * seed
        curves = {
            "step": [1, 2],
            "train_loss": [loss + 1, loss],
            "val_loss": [loss + 1, loss],
            "val_accuracy": [math.nan] * 2,
            "time": [0.1, 0.2],
        }
        return curves, lr > 0.5

    return BenchmarkProblem("toy", "toy", {"tiny": {"steps": 2}}, runner, False, "loss")


def test_tune_runs_the_whole_grid_with_the_search_seed_and_picks_the_argmin():
    calls = []
    grid = bm.lr_grid(1e-2, 5, 4.0)
    lr, search = bm.tune(_toy_problem(calls), bm.OPTIMIZERS["SGD"], "tiny", grid)
    assert lr == pytest.approx(1e-2)
    assert [c[0] for c in calls] == grid and {c[1] for c in calls} == {bm.SEARCH_SEED}
    assert [r["diverged"] for r in search] == [False, False, False, False, True]  # lr = 1 > 0.5


def test_rerun_uses_the_selected_lr_and_distinct_seeds():
    calls = []
    runs = bm.rerun(_toy_problem(calls), bm.OPTIMIZERS["SGD"], "tiny", 0.01, [1, 2, 3])
    assert calls == [(0.01, 1), (0.01, 2), (0.01, 3)]
    assert [r["seed"] for r in runs] == [1, 2, 3]
    with pytest.raises(ValueError, match="seeds"):
        bm.rerun(_toy_problem([]), bm.OPTIMIZERS["SGD"], "tiny", 0.01, [1, 1])


def test_rerun_is_deterministic_and_seeds_matter():
    problem, spec = bm.PROBLEMS["quadratic"], bm.OPTIMIZERS["Adam"]
    a = bm.rerun(problem, spec, "tiny", 0.01, [1, 2])
    b = bm.rerun(problem, spec, "tiny", 0.01, [1, 2])
    assert [r["curves"]["val_loss"] for r in a] == [r["curves"]["val_loss"] for r in b]
    assert a[0]["final"]["val_loss"] != a[1]["final"]["val_loss"]


def test_network_run_is_deterministic():
    problem, spec = bm.PROBLEMS["digits_mlp"], bm.OPTIMIZERS["Momentum"]
    a, b = (problem.run("tiny", spec, 0.05, 3) for _ in range(2))
    assert a["curves"]["val_loss"] == b["curves"]["val_loss"]
    assert len(a["curves"]["step"]) == 3 and a["curves"]["step"][-1] == 30


def test_summarize_problem_target_is_the_median_halfway_loss():
    def run(losses):
        n = len(losses)
        return {
            "diverged": False,
            "steps": 10 * n,
            "wall_time": 1.0,
            "final": {"val_loss": losses[-1], "train_loss": losses[-1], "val_accuracy": math.nan},
            "curves": {
                "step": [10 * (i + 1) for i in range(n)],
                "val_loss": losses,
                "time": [0.5 * (i + 1) for i in range(n)],
            },
        }

    results = {  # halfway (step 20 of 40) losses 3, 2 and 5 -> median 3
        "A": {"lr": 0.1, "runs": [run([4, 3, 2, 1]), run([4, 3, 2, 1.1])]},
        "B": {"lr": 0.1, "runs": [run([3, 2, 1, 0.5]), run([3, 2, 1, 0.6])]},
        "C": {"lr": 0.1, "runs": [run([6, 5, 4, 3.5]), run([6, 5, 4, 3.2])]},
    }
    summary = bm.summarize_problem(results)
    assert summary["target"]["val_loss"] == 3
    rows = summary["optimizers"]
    assert rows["A"]["steps_to_target"] == (20, 0.0) and rows["B"]["steps_to_target"] == (10, 0.0)
    assert rows["C"]["reached_target"] == 0 and math.isnan(rows["C"]["steps_to_target"][0])
    assert rows["B"]["best"] and rows["A"]["distinguishable"] and rows["C"]["distinguishable"]


def test_log_scale_separates_losses_that_span_orders_of_magnitude():
    def run(loss):
        return {
            "diverged": False,
            "steps": 10,
            "wall_time": 1.0,
            "final": {"val_loss": loss, "train_loss": loss, "val_accuracy": math.nan},
            "curves": {"step": [10], "val_loss": [loss], "time": [1.0]},
        }

    # The quick benchmark's quadratic in miniature: "tight" ends near 1e-15 on every seed, "wild"
    # anywhere from 1e-14 to 4e-10. On the raw scale the one 4e-10 seed inflates wild's standard
    # deviation so much that a 10^4-fold worse typical run is "not distinguishable"; on the log
    # scale, where these losses live, it is.
    results = {
        "tight": {"lr": 0.1, "runs": [run(v) for v in (1.0e-15, 1.2e-15, 0.9e-15, 1.1e-15, 1.0e-15)]},
        "wild": {"lr": 0.1, "runs": [run(v) for v in (1e-14, 1e-13, 1e-12, 1e-11, 4e-10)]},
    }
    raw = bm.summarize_problem(results)["optimizers"]
    logged = bm.summarize_problem(results, log_scale=True)["optimizers"]
    assert raw["tight"]["best"] and not raw["wild"]["distinguishable"]
    assert logged["tight"]["best"] and logged["wild"]["distinguishable"]
    # Reported means stay in the loss's own units.
    assert logged["tight"]["val_loss"] == raw["tight"]["val_loss"]


def test_test_functions_compare_log_losses():
    assert bm.PROBLEMS["quadratic"].log_scale and bm.PROBLEMS["rosenbrock"].log_scale
    assert not bm.PROBLEMS["digits_mlp"].log_scale


# ----------------------------------------------------------------------------- statistics


def test_mean_std_on_known_numbers():
    assert bm.mean_std([1, 2, 3, 4]) == pytest.approx((2.5, math.sqrt(5 / 3)))
    assert bm.mean_std([7.0]) == (7.0, 0.0)
    mean, std = bm.mean_std([1.0, math.inf])
    assert mean == math.inf and math.isnan(std)
    with pytest.raises(ValueError, match="values"):
        bm.mean_std([])


def test_welch_t_test_on_known_numbers():
    # By hand: means 2.625 and 4.12, variances 2.0625 and 2.087, n 4 and 5.
    t, df, p = bm.welch_t_test([1, 2, 3, 4.5], [2.5, 3, 4, 5, 6.1])
    assert t == pytest.approx(-1.5050483866, rel=1e-9)
    assert df == pytest.approx(6.5068541491, rel=1e-9)
    assert p == pytest.approx(0.1792171491, rel=1e-7)
    with pytest.raises(ValueError, match="sample sizes"):
        bm.welch_t_test([1.0], [1.0, 2.0])


def test_welch_p_value_without_scipy(monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy.stats", None)
    _, _, p = _stats.welch_t_test([1, 2, 3, 4.5], [2.5, 3, 4, 5, 6.1])
    assert p == pytest.approx(0.1792171491, rel=1e-7)
    _, _, p = _stats.welch_t_test([10.0, 10.1, 9.9], [1.0, 1.1, 0.9])
    assert p == pytest.approx(4.062191902261223e-08, rel=1e-6)  # scipy.stats.ttest_ind(equal_var=False)


def test_welch_edge_cases():
    assert bm.welch_t_test([1.0, 1.0], [1.0, 1.0])[2] == 1.0
    assert bm.welch_t_test([1.0, 1.0], [2.0, 2.0])[2] == 0.0
    assert bm.welch_t_test([1.0, math.inf], [2.0, 2.1])[2] == 0.0


def test_mark_significance():
    marks = bm.mark_significance(
        {
            "best": [1.0, 1.1, 0.9, 1.05],
            "close": [1.05, 1.2, 0.95, 1.1],
            "far": [2.0, 2.1, 1.9, 2.05],
            "diverged": [1.0, math.inf, 1.0, 1.0],
        }
    )
    assert marks["best"]["mark"] == "best" and marks["best"]["best"]
    assert marks["close"]["mark"] == "not distinguishable from the best" and marks["close"]["p"] > 0.05
    assert marks["far"]["distinguishable"] and marks["far"]["mark"].startswith("worse (p=")
    assert marks["diverged"]["distinguishable"]
    with pytest.raises(ValueError, match="alpha"):
        bm.mark_significance({"a": [1, 2]}, alpha=1.5)


# ----------------------------------------------------------------------------- peers


def test_missing_peer_is_skipped_with_a_note(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pytorch_optimizer", None)  # import now raises ImportError
    specs, skipped = bm.available_optimizers(["Adam", "Adan"])
    assert [s.name for s in specs] == ["Adam"]
    assert "pytorch_optimizer" in skipped["Adan"]
    assert "Skipping Adan" in capsys.readouterr().out


def test_bad_names_raise():
    with pytest.raises(ValueError, match="optimizers"):
        bm.available_optimizers(["Adamm"])
    with pytest.raises(ValueError, match="problems"):
        bm.run_benchmark("tiny", problems=["nope"])
    with pytest.raises(ValueError, match="size"):
        bm.run_benchmark("huge")
    with pytest.raises(ValueError, match="seeds"):
        bm.run_benchmark("tiny", seeds=1)


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def tiny_payload():
    return bm.run_benchmark(
        "tiny", problems=["quadratic", "digits_mlp"], optimizers=["SGD", "Adam", "Momentum"], progress=False
    )


def test_tiny_run_has_everything_chapter_12_needs(tiny_payload):
    p = tiny_payload
    assert p["seeds"] == [1, 2] and p["search_seed"] == 0
    for name in ("quadratic", "digits_mlp"):
        results = p["problems"][name]["results"]
        for r in results.values():
            assert len(r["search"]) == 3 and [s["lr"] for s in r["search"]] == r["grid"]
            assert r["lr"] in r["grid"]
            assert r["lr"] == bm.select_lr(r["search"])
            assert [run["seed"] for run in r["runs"]] == [1, 2]
            assert all(run["lr"] == r["lr"] for run in r["runs"])
            assert all(len(run["curves"]["val_loss"]) == len(run["curves"]["step"]) > 0 for run in r["runs"])
        assert set(p["problems"][name]["summary"]["optimizers"]) == {"SGD", "Adam", "Momentum"}


def test_json_round_trip(tiny_payload, tmp_path, monkeypatch, capsys):
    out = bm.save_benchmark(tiny_payload, tmp_path / "b.json")
    json.loads(out.read_text())  # strict JSON: no NaN or Infinity literals
    loaded = bm.load_benchmark("tiny", path=out)
    direct = bm.BenchmarkResult(tiny_payload)
    for problem in ("quadratic", "digits_mlp"):
        assert loaded.table(problem) == direct.table(problem)

    monkeypatch.setenv("OPTLIB_RESULTS", str(tmp_path / "results"))
    with pytest.raises(FileNotFoundError):
        bm.load_benchmark("full")
    quick = dict(tiny_payload, size="quick")
    path = bm.save_benchmark(quick)
    assert path.name == "benchmark_quick.json"
    result = bm.load_benchmark("full")
    assert result.size == "quick" and "No full-size results" in result.note
    assert "quick size" in capsys.readouterr().out


def test_plots_are_titled_and_labelled(tiny_payload):
    import matplotlib.pyplot as plt

    result = bm.BenchmarkResult(tiny_payload)
    ax = result.plot_curves("digits_mlp", "val_loss")
    assert ax.get_title() and ax.get_xlabel() == "optimizer step" and ax.get_ylabel()
    assert len(ax.get_lines()) >= 3
    ax = result.plot_summary()
    assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    plt.close("all")
    with pytest.raises(ValueError, match="problem"):
        result.table("nope")


def test_cli_tiny_end_to_end(tmp_path, capsys):
    out = tmp_path / "cli.json"
    opts = ["SGD", "Adam"] + (
        ["ScheduleFreeAdamW"] if bm.available_optimizers(["ScheduleFreeAdamW"], verbose=False)[0] else []
    )
    assert (
        main(
            [
                "--size",
                "tiny",
                "--problems",
                "rosenbrock",
                "mnist1d_cnn",
                "--optimizers",
                *opts,
                "--no-progress",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "Rosenbrock" in text and "MNIST-1D" in text and "Greydanus" in text and "vs best" in text
    record = json.loads(out.read_text())
    assert record["payload"]["size"] == "tiny"
    assert set(record["payload"]["problems"]["mnist1d_cnn"]["results"]) == set(opts)
