"""Tests of the course benchmark: fair grids, tuning, seeds, statistics, peers, schedules, JSON, and a tiny run."""

from __future__ import annotations

import copy
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
from optlib.results import _jsonable  # noqa: E402

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


@pytest.mark.parametrize("size", ["quick", "full"])
def test_reported_sizes_search_finely_around_the_selected_lr(size):
    # Issue 10: 9+ points over 4 decades, and at least two points per octave and a half (spacing at
    # most 2^0.75 = 1.68x) where it matters, around the winner, which then has 3 points within 1.5x.
    s = bm.SIZE_SETTINGS[size]
    assert s["grid_points"] >= 9 and s["grid_decades"] >= 4
    grid = bm.lr_grid(1e-3, s["grid_points"], s["grid_decades"])
    winner = grid[4]
    local = sorted([winner, *bm.refine_points(grid, winner, s["refine_points"])])
    assert max(b / a for a, b in zip(local, local[1:])) <= 2**0.75
    assert sum(1 for lr in local if max(lr / winner, winner / lr) <= 1.5) >= 3
    assert s["seeds"] >= 5 and set(s["schedules"]) == {"constant", "warmup_cosine"}


def test_refine_points_by_hand():
    grid = [1e-4, 1e-3, 1e-2, 1e-1, 1.0]  # one decade apart
    assert bm.refine_points(grid, 1e-2, 4) == pytest.approx(
        [1e-2 * 10**-0.5, 1e-2 * 10**-0.25, 1e-2 * 10**0.25, 1e-2 * 10**0.5]
    )
    assert bm.refine_points(grid, 1.0, 2) == pytest.approx([10**-0.5, 10**0.5])  # at the end: half beyond it
    assert bm.refine_points(grid, 1e-2, 0) == [] and bm.refine_points([1e-3], 1e-3, 4) == []
    with pytest.raises(ValueError, match="points"):
        bm.refine_points(grid, 1e-2, 3)


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


def test_tune_refines_around_the_coarse_winner_with_the_same_budget():
    calls = []
    grid = bm.lr_grid(3e-2, 5, 4.0)  # 3e-4 ... 3: the toy's best lr, 1e-2, falls between two points
    lr, search = bm.tune(_toy_problem(calls), bm.OPTIMIZERS["SGD"], "tiny", grid, refine=4)
    assert len(calls) == 9 and {c[1] for c in calls} == {bm.SEARCH_SEED}
    assert [c[0] for c in calls[:5]] == grid  # the coarse grid first, then the refinement
    assert calls[5:] == [(x, 0) for x in bm.refine_points(grid, grid[2], 4)]  # coarse winner: 3e-2
    assert [r["lr"] for r in search] == sorted(r["lr"] for r in search)
    assert lr == pytest.approx(3e-2 * 10**-0.5)  # the refining point nearest 1e-2 wins
    assert sum(r["refine"] for r in search) == 4


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


def test_holm_against_a_hand_computed_example():
    # Sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max 0.06.
    assert bm.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert bm.holm([0.2]) == [0.2] and bm.holm([]) == []
    assert bm.holm([0.5, 0.6]) == [1.0, 1.0]  # capped at 1
    with pytest.raises(ValueError, match="pvalues"):
        bm.holm([0.1, 1.5])


def test_mean_difference_ci_and_hedges_g_on_known_numbers(monkeypatch):
    a, b = [1, 2, 3, 4.5], [2.5, 3, 4, 5, 6.1]
    # scipy.stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    expected = (-1.495, -3.8804102616567304, 0.8904102616567302)
    assert bm.mean_difference_ci(a, b) == pytest.approx(expected, rel=1e-9)
    # By hand: s_pooled = 1.47723, d = -1.01203, J = 1 - 3/(4*9 - 9) = 0.88889, SE^2 = 9/20 + g^2/18.
    assert bm.hedges_g(a, b) == pytest.approx((-0.8995803761037832, -2.278478833942773, 0.4793180817352066), rel=1e-9)
    monkeypatch.setitem(sys.modules, "scipy.stats", None)  # the bisection quantile gives the same interval
    assert _stats.mean_difference_ci(a, b) == pytest.approx(expected, rel=1e-7)
    with pytest.raises(ValueError, match="confidence"):
        bm.mean_difference_ci(a, b, confidence=95)


def test_mean_difference_ci_covers_the_true_difference_95_percent_of_the_time():
    import random

    rng = random.Random(0)
    trials, hits = 2000, 0
    for _ in range(trials):
        a = [rng.gauss(1.0, 1.0) for _ in range(5)]
        b = [rng.gauss(0.5, 2.0) for _ in range(7)]  # unequal variances and sizes: Welch's case
        _, lo, hi = bm.mean_difference_ci(a, b)
        hits += lo <= 0.5 <= hi
    # Binomial(2000, 0.95) has std 0.5%: 93.5% .. 96.5% is three of them either side.
    assert 0.935 <= hits / trials <= 0.965


def test_compare_pairs_holm_turns_marginal_differences_into_not_distinguishable():
    base = [1.0, 1.1, 0.9, 1.05, 0.95]

    def shifted(d):
        out = [x + d for x in reversed(base)]
        out[0] += 0.02
        return out

    pairs = {"slight": (shifted(0.12), base), "slight2": (shifted(0.13), base), "clear": (shifted(0.3), base)}
    pairs["better"] = (base, shifted(0.3))
    out = bm.compare_pairs(pairs)
    assert out["slight"]["p"] < 0.05 and out["slight2"]["p"] < 0.05  # each alone would be "worse"
    assert out["slight"]["verdict"] == out["slight2"]["verdict"] == "not distinguishable"
    assert out["clear"]["verdict"] == "worse" and out["better"]["verdict"] == "better"
    assert [out[n]["p_holm"] for n in pairs] == pytest.approx(bm.holm([out[n]["p"] for n in pairs]))
    diff, lo, hi = out["clear"]["diff"], *out["clear"]["diff_ci"]
    assert lo < diff < hi and diff == pytest.approx(0.3 + 0.02 / 5) and lo > 0
    assert out["better"]["g"] < 0 < out["clear"]["g"]


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
    assert marks["far"]["distinguishable"] and marks["far"]["mark"].startswith("worse (Holm p=")
    assert marks["diverged"]["distinguishable"]
    assert marks["far"]["p_holm"] >= marks["far"]["p"] and marks["far"]["diff_ci"][0] > 0
    assert marks["close"]["diff_ci"][0] < 0 < marks["close"]["diff_ci"][1]
    with pytest.raises(ValueError, match="alpha"):
        bm.mark_significance({"a": [1, 2]}, alpha=1.5)


# ----------------------------------------------------------------------------- peers


def test_missing_peer_is_skipped_with_a_note(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pytorch_optimizer", None)  # import now raises ImportError
    specs, skipped = bm.available_optimizers(["Adam", "Adan"])
    assert [s.name for s in specs] == ["Adam"]
    assert "pytorch_optimizer" in skipped["Adan"]
    assert "Skipping Adan" in capsys.readouterr().out


def test_a_torch_without_muon_skips_it_with_a_note(monkeypatch):
    import torch

    monkeypatch.delattr(torch.optim, "Muon")
    specs, skipped = bm.available_optimizers(["AdamW", "Muon"], verbose=False)
    assert [s.name for s in specs] == ["AdamW"]
    assert "torch.optim.Muon" in skipped["Muon"] and "optlib[benchmark]" in skipped["Muon"]


def test_bad_names_raise():
    with pytest.raises(ValueError, match="optimizers"):
        bm.available_optimizers(["Adamm"])
    with pytest.raises(ValueError, match="problems"):
        bm.run_benchmark("tiny", problems=["nope"])
    with pytest.raises(ValueError, match="size"):
        bm.run_benchmark("huge")
    with pytest.raises(ValueError, match="seeds"):
        bm.run_benchmark("tiny", seeds=1)


def test_muon_gets_only_the_hidden_matrices():
    import torch

    from optlib.models import MLP, MNIST1DCNN, CharTransformer

    mlp = MLP(8, (16, 12), 3, seed=0)
    names = {id(p): n for n, p in mlp.named_parameters()}
    hidden, others = bm.hidden_matrices(mlp)
    assert sorted(names[id(p)] for p in hidden) == ["net.1.weight", "net.3.weight"]  # not net.5, the output layer
    assert all(p.ndim == 2 for p in hidden) and {p.ndim for p in others} == {1, 2}
    assert len(hidden) + len(others) == len(list(mlp.parameters()))

    lm = CharTransformer(11, 8, 1, 2, 8, seed=0)
    names = {id(p): n for n, p in lm.named_parameters()}
    hidden, others = bm.hidden_matrices(lm)
    assert sorted(names[id(p)] for p in hidden) == [
        "blocks.0.attn.proj.weight",
        "blocks.0.attn.qkv.weight",
        "blocks.0.mlp.0.weight",
        "blocks.0.mlp.2.weight",
    ]
    assert {"token_embedding.weight", "position_embedding.weight"} <= {names[id(p)] for p in others}  # tied lm_head
    assert bm.hidden_matrices(MNIST1DCNN(4, 10, 40, seed=0))[0] == []  # conv kernels and the output layer only

    spec = bm.OPTIMIZERS["Muon"]
    opt = spec.build_for_model(mlp, 1e-2)
    assert isinstance(opt.muon, torch.optim.Muon) and isinstance(opt.adamw, torch.optim.AdamW)
    assert {id(p) for g in opt.muon.param_groups for p in g["params"]} == {id(p) for p in bm.hidden_matrices(mlp)[0]}
    assert opt.muon.defaults["adjust_lr_fn"] == "match_rms_adamw"
    before = [p.detach().clone() for p in mlp.parameters()]
    mlp(torch.randn(4, 8)).sum().backward()
    opt.step()
    assert all(not torch.equal(b, p) for b, p in zip(before, mlp.parameters()))  # both parts moved
    with pytest.raises(ValueError, match="build_for_model"):
        spec.build(mlp.parameters(), 1e-2)
    assert not spec.applies_to(None) and spec.applies_to(mlp)
    assert "not run" in bm.PROBLEMS["mnist1d_cnn"].not_applicable("tiny", spec)
    assert bm.PROBLEMS["digits_mlp"].not_applicable("tiny", spec) is None


def test_a_missing_peer_never_replaces_saved_results_that_have_it(tmp_path):
    saved = tmp_path / "b.json"
    saved.write_text(json.dumps({"payload": {"optimizers": {"Adam": {}, "Adan": {}}}}))
    with pytest.raises(FileExistsError, match="--force"):
        bm.check_output(saved)
    bm.check_output(saved, force=True)  # everything there is still in the run: --force may replace it
    with pytest.raises(FileExistsError, match=r"Adan.*optlib\[benchmark\]"):
        bm.check_output(saved, force=True, skipped={"Adan": "no package"})
    bm.check_output(tmp_path / "new.json", skipped={"Adan": "no package"})  # a new file is fine


def test_cli_refuses_to_overwrite_before_training(tmp_path, monkeypatch, capsys):
    import optlib.benchmark.__main__ as cli

    saved = tmp_path / "b.json"
    saved.write_text(json.dumps({"payload": {"optimizers": {"SGD": {}}}}))
    monkeypatch.setattr(cli, "run_benchmark", lambda *a, **k: pytest.fail("trained before refusing"))
    with pytest.raises(SystemExit) as err:
        main(["--size", "tiny", "--problems", "quadratic", "--optimizers", "SGD", "--out", str(saved)])
    assert err.value.code == 2 and "--force" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--size", "tiny", "--seeds", "1", "--out", str(tmp_path / "x.json")])
    assert "at least 2" in capsys.readouterr().err


def test_help_says_cost_seeds_and_output(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "2-core CPU" in text and "minute" in text and "benchmark_<size>.json" in text
    assert "at least 2" in text and "--force" in text
    for size in bm.SIZE_SETTINGS:
        assert f"{size}:" in text


# ----------------------------------------------------------------------------- schedules


def test_warmup_cosine_sets_the_lr_of_every_step():
    from optlib.benchmark._problems import WARMUP_FRACTION, _function_runner, _quadratic
    from optlib.schedules import warmup_cosine_factor

    cfg = dict(dim=5, condition_number=10, steps=40, eval_every=1, start_noise=0.1)
    problem = BenchmarkProblem("q", "q", {"tiny": cfg}, _function_runner(_quadratic), False, "f")
    lr, warm = 0.05, round(WARMUP_FRACTION * 40)
    scheduled = problem.run("tiny", bm.OPTIMIZERS["Adam"], lr, 1, schedule="warmup_cosine")
    constant = problem.run("tiny", bm.OPTIMIZERS["Adam"], lr, 1)
    # curves["lr"][k] is the rate step k + 1 used: warm-up from 0, then the cosine to 0.
    expected = [lr * warmup_cosine_factor(k, warm, 40) for k in range(40)]
    assert scheduled["curves"]["lr"] == pytest.approx(expected)
    assert constant["curves"]["lr"] == [lr] * 40
    assert scheduled["curves"]["val_loss"] != constant["curves"]["val_loss"]
    with pytest.raises(ValueError, match="schedule"):
        problem.run("tiny", bm.OPTIMIZERS["Adam"], lr, 1, schedule="cosine")


def test_warmup_cosine_reaches_the_training_loop():
    record = bm.PROBLEMS["digits_mlp"].run("tiny", bm.OPTIMIZERS["Adam"], 0.01, 1, schedule="warmup_cosine")
    lrs = record["curves"]["lr"]  # evaluations at steps 10, 20, 30 of 30
    assert lrs[0] > lrs[1] > lrs[2] > 0 and lrs[0] < 0.01


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def tiny_payload():
    return bm.run_benchmark(
        "tiny",
        problems=["quadratic", "digits_mlp"],
        optimizers=["SGD", "Adam", "Muon"],
        progress=False,
        schedules=["constant", "warmup_cosine"],
    )


def test_tiny_run_has_everything_chapter_13_needs(tiny_payload):
    p = tiny_payload
    assert p["seeds"] == [1, 2] and p["search_seed"] == 0 and p["schedules"] == ["constant", "warmup_cosine"]
    expected = {"quadratic": {"SGD", "Adam"}, "digits_mlp": {"SGD", "Adam", "Muon"}}  # Muon: hidden matrices only
    for name in ("quadratic", "digits_mlp"):
        problem = p["problems"][name]
        assert set(problem["not_applicable"]) == ({"Muon"} if name == "quadratic" else set())
        for variant in (problem, problem["schedules"]["warmup_cosine"]):
            for r in variant["results"].values():
                lrs = [s["lr"] for s in r["search"]]
                assert len(lrs) == 5 and lrs == sorted(lrs) and set(r["grid"]) <= set(lrs)
                assert r["lr"] == bm.select_lr(r["search"])
                assert [run["seed"] for run in r["runs"]] == [1, 2]
                assert all(run["lr"] == r["lr"] for run in r["runs"])
                assert all(len(run["curves"]["val_loss"]) == len(run["curves"]["step"]) > 0 for run in r["runs"])
            assert set(variant["summary"]["optimizers"]) == expected[name]
        scheduled = problem["schedules"]["warmup_cosine"]["results"]["SGD"]["runs"][0]
        assert scheduled["schedule"] == "warmup_cosine" and scheduled["curves"]["lr"][-1] < scheduled["lr"]


def test_parallel_jobs_give_the_same_numbers(tiny_payload):
    kwargs = dict(problems=["quadratic"], optimizers=["Adam"], progress=False, schedules=["constant", "warmup_cosine"])
    parallel = bm.run_benchmark("tiny", jobs=2, **kwargs)  # two searches, one per worker
    assert parallel["jobs"] == 2
    for schedule in ("constant", "warmup_cosine"):
        mine = bm.BenchmarkResult(parallel).results("quadratic", schedule)["Adam"]
        theirs = bm.BenchmarkResult(tiny_payload).results("quadratic", schedule)["Adam"]
        assert mine["lr"] == theirs["lr"]
        assert [r["curves"]["val_loss"] for r in mine["runs"]] == [r["curves"]["val_loss"] for r in theirs["runs"]]
    with pytest.raises(ValueError, match="jobs"):
        bm.run_benchmark("tiny", jobs=0)


def test_time_to_target_is_recorded(tiny_payload):
    for problem in tiny_payload["problems"].values():
        for name, row in problem["summary"]["optimizers"].items():
            runs = problem["results"][name]["runs"]
            assert all(0 < t1 < t2 for run in runs for t1, t2 in zip(run["curves"]["time"], run["curves"]["time"][1:]))
            if row["reached_target"]:
                steps, seconds = row["steps_to_target"][0], row["time_to_target"][0]
                assert 0 < steps <= runs[0]["steps"] and 0 < seconds <= max(run["wall_time"] for run in runs)
            else:
                assert math.isnan(row["time_to_target"][0])
    assert any(
        row["reached_target"] for p in tiny_payload["problems"].values() for row in p["summary"]["optimizers"].values()
    )
    result = bm.BenchmarkResult(tiny_payload)
    row = result.table("digits_mlp")[0]
    assert "s to target" in row and "steps to target" in row


def assert_same_to_six_digits(back, original, where="run"):
    """``back`` is ``original`` read back from a results file: floats to six significant
    digits, NaN and infinities as they were, everything else equal."""
    if isinstance(original, dict):
        assert back.keys() == original.keys(), where
        for key in original:
            assert_same_to_six_digits(back[key], original[key], f"{where}.{key}")
    elif isinstance(original, (list, tuple)):
        assert len(back) == len(original), where
        for i, (b, o) in enumerate(zip(back, original)):
            assert_same_to_six_digits(b, o, f"{where}[{i}]")
    elif isinstance(original, float):
        assert math.isnan(back) if math.isnan(original) else back == pytest.approx(original, rel=5e-6, abs=0), where
    else:
        assert back == original, where


def test_json_round_trip(tiny_payload, tmp_path, monkeypatch, capsys):
    out = bm.save_benchmark(tiny_payload, tmp_path / "b.json")
    json.loads(out.read_text())  # strict JSON: no NaN or Infinity literals
    loaded = bm.load_benchmark("tiny", path=out)
    for problem in ("quadratic", "digits_mlp"):
        for name, result in tiny_payload["problems"][problem]["results"].items():
            for run, back in zip(
                result["runs"], loaded.payload["problems"][problem]["results"][name]["runs"], strict=True
            ):
                assert_same_to_six_digits(back, run)
    # The file keeps six significant digits, and a spread of two near-equal wall times can
    # round across a printed digit (7.1e-05 against 7e-05), so the table is compared with
    # the one built from the payload rounded the way the file rounds it.
    rounded = bm._result._restore(json.loads(json.dumps(_jsonable(tiny_payload, digits=6))))
    for problem in ("quadratic", "digits_mlp"):
        assert loaded.table(problem) == bm.BenchmarkResult(rounded).table(problem)

    monkeypatch.setenv("OPTLIB_RESULTS", str(tmp_path / "results"))
    with pytest.raises(FileNotFoundError):
        bm.load_benchmark("full")
    quick = dict(tiny_payload, size="quick")
    path = bm.save_benchmark(quick)
    assert path.name == "benchmark_quick.json"
    result = bm.load_benchmark("full")
    assert result.size == "quick" and "No full-size results" in result.note
    assert "quick size" in capsys.readouterr().out


def test_full_results_with_some_problems_are_filled_in_from_quick(tiny_payload, tmp_path, monkeypatch, capsys):
    import matplotlib.pyplot as plt

    monkeypatch.setenv("OPTLIB_RESULTS", str(tmp_path))
    full = copy.deepcopy(dict(tiny_payload, size="full"))
    del full["problems"]["quadratic"]  # a CPU's full run: only the problems that fit
    bm.save_benchmark(full)
    bm.save_benchmark(dict(tiny_payload, size="quick"))
    result = bm.load_benchmark("full")
    assert result.problems == ["quadratic", "digits_mlp"]  # the benchmark's order, not the files'
    assert result.problem_size("digits_mlp") == "full" and result.problem_size("quadratic") == "quick"
    assert result.sizes == {"quick": ["quadratic"], "full": ["digits_mlp"]}
    assert "quadratic come from the quick-size results" in capsys.readouterr().out
    ax = result.plot_summary()
    assert [t.get_text() for t in ax.get_yticklabels()] == ["quadratic (quick)", "digits_mlp (full)"]
    assert "quick" in result.plot_curves("quadratic").get_title()
    plt.close("all")
    alone = bm.load_benchmark("full", fill=False)
    assert alone.problems == ["digits_mlp"] and alone.sizes == {"full": ["digits_mlp"]}


def test_plots_are_titled_and_labelled(tiny_payload):
    import matplotlib.pyplot as plt

    result = bm.BenchmarkResult(tiny_payload)
    ax = result.plot_curves("digits_mlp", "val_loss")
    assert ax.get_title() and ax.get_xlabel() == "optimizer step" and ax.get_ylabel()
    assert len(ax.get_lines()) >= 3
    ax = result.plot_summary()
    assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    assert "n/a" in [t.get_text() for t in ax.texts]  # Muon on the quadratic
    ax = result.plot_lr_sensitivity("digits_mlp")
    assert ax.get_title() and ax.get_xlabel() == "learning rate" and "final validation loss" in ax.get_ylabel()
    assert ax.get_xscale() == "log" and len(ax.get_legend().get_texts()) == 3
    ax = result.plot_curves("digits_mlp", "lr", schedule="warmup_cosine")
    assert ax.get_ylabel() == "learning rate" and "warm-up + cosine" in ax.get_title()
    plt.close("all")
    with pytest.raises(ValueError, match="problem"):
        result.table("nope")


def test_curve_band_is_the_seeds_median_and_range_and_stays_positive(tiny_payload):
    import numpy as np

    payload = copy.deepcopy(tiny_payload)
    runs = payload["problems"]["quadratic"]["results"]["Adam"]["runs"]
    runs[0]["curves"]["val_loss"] = [v * 1e6 for v in runs[0]["curves"]["val_loss"]]  # one seed far above the other
    result = bm.BenchmarkResult(payload)
    steps, median, lowest, highest = result.curve_band("quadratic", "Adam")
    values = np.array([r["curves"]["val_loss"] for r in runs])
    np.testing.assert_allclose(median, np.median(values, axis=0))
    np.testing.assert_allclose(lowest, values.min(axis=0))
    np.testing.assert_allclose(highest, values.max(axis=0))
    _, mean, std = result.curves("quadratic", "Adam")
    assert (mean - std < 0).any() and (lowest > 0).all()  # mean - std would fall off a log axis; the range does not
    assert list(steps) == runs[0]["curves"]["step"]


def test_tables_give_verdicts_with_effect_sizes(tiny_payload):
    result = bm.BenchmarkResult(tiny_payload)
    rows = result.table("digits_mlp")
    ci_col = next(c for c in rows[0] if c.startswith("Δ loss vs best"))
    assert rows[0]["vs best"] == "best" and rows[0][ci_col] == "-"
    for r in rows[1:]:
        assert r["vs best"].startswith(("worse (Holm p=", "not distinguishable"))
        assert "[" in r[ci_col] or r[ci_col] == "diverged"
    assert any(c.startswith("Δ log10 loss") for c in result.table("quadratic")[0])
    frame = result.dataframe("digits_mlp")
    assert list(frame.index) == [r["optimizer"] for r in rows]

    sched = result.schedule_table("digits_mlp")
    assert [r["optimizer"] for r in sched] == ["SGD", "Adam", "Muon"]
    constant_rows = {r["optimizer"]: r for r in rows}
    for r in sched:
        assert r["warm-up + cosine vs constant"] in ("better", "worse", "not distinguishable")
        assert r["steps to target (constant)"] == constant_rows[r["optimizer"]]["steps to target"]  # one target
        assert "[" in r["Δ loss [95% CI]"] and "[" in r["Hedges' g [95% CI]"]
    versus = result.compare("digits_mlp", "Muon", ["Adam", "SGD"])
    assert [v["versus"] for v in versus] == ["Adam", "SGD"] and all("p_holm" in v for v in versus)

    tuning = result.tuning_table("digits_mlp")
    assert {r["lrs searched"] for r in tuning} == {5} and all(r["within 1.5x"] >= 1 for r in tuning)
    with pytest.raises(ValueError, match="schedule"):
        bm.BenchmarkResult({"problems": tiny_payload["problems"], "size": "tiny"}).table("quadratic", "linear")


def test_files_saved_before_schedules_and_muon_still_load(tiny_payload, tmp_path):
    import copy

    old = copy.deepcopy(tiny_payload)
    for key in ("schedules", "schedule_settings"):
        old.pop(key)
    for problem in old["problems"].values():
        for key in ("schedules", "not_applicable", "log_scale"):
            problem.pop(key)
        problem["results"].pop("Muon", None)
        for r in problem["results"].values():
            for run in r["runs"]:
                run["curves"].pop("lr")
    out = bm.save_benchmark(old, tmp_path / "old.json")
    loaded = bm.load_benchmark("tiny", path=out)
    assert loaded.schedules == ["constant"] and loaded.not_applicable("quadratic") == {}
    assert sorted(r["optimizer"] for r in loaded.table("digits_mlp")) == ["Adam", "SGD"]
    assert loaded.table("quadratic")[0]["vs best"] == "best"
    assert loaded.summary("quadratic")["log_scale"]  # taken from the registry


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
    with pytest.raises(SystemExit):  # the same command again would overwrite it
        main(["--size", "tiny", "--problems", "rosenbrock", "--optimizers", "SGD", "--no-progress", "--out", str(out)])
    assert "--force" in capsys.readouterr().err
