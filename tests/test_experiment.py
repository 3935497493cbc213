import json
import math

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

import optlib
from optlib.data import load_digits
from optlib.experiment import ExperimentResult, compare_optimizers, show_experiment
from optlib.models import MLP


@pytest.fixture
def results_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTLIB_RESULTS", str(tmp_path))
    return tmp_path


OPTIMIZERS = {"SGD": (torch.optim.SGD, {"lr": 0.1}), "Adam": (torch.optim.Adam, {"lr": 1e-2})}


def run(size="tiny", **kwargs):
    settings = dict(
        data="digits",
        model=lambda: MLP(64, hidden=(16,)),
        optimizers=OPTIMIZERS,
        size=size,
        epochs={"tiny": 2, "quick": 2, "full": 2},
        seeds={"tiny": [0, 1], "quick": [0], "full": [0, 1]},
        progress=False,
    )
    settings.update(kwargs)
    return compare_optimizers("unit_test", **settings)


def test_tiny_comparison_end_to_end(results_dir):
    result = run()
    assert list(result.histories) == ["SGD", "Adam"] and result.seeds == [0, 1]
    assert all(len(runs) == 2 for runs in result.histories.values())
    sgd0, sgd1 = result.histories["SGD"]
    assert sgd0.seed == 0 and sgd1.seed == 1 and sgd0.step_loss != sgd1.step_loss
    assert result.histories["Adam"][0].optimizer == "Adam"
    rows = result.summary()
    assert [row["optimizer"] for row in rows] == ["SGD", "Adam"]
    assert all(0.0 < row["val_accuracy_mean"] <= 1.0 and row["runs"] == 2 for row in rows)
    assert "val accuracy" in str(rows) and "±" in str(rows)
    assert not list(results_dir.iterdir())  # only full-size runs are saved by default


def test_same_seed_same_initial_weights_for_every_optimizer():
    result = run(optimizers={"a": (torch.optim.SGD, {"lr": 0.0}), "b": (torch.optim.SGD, {"lr": 0.0})})
    assert result.histories["a"][0].epochs["val_loss"] == result.histories["b"][0].epochs["val_loss"]


def test_full_size_saves_and_show_experiment_plots_both(results_dir, capsys):
    data = load_digits().subset(200, 100)
    result = run(size="full", data=data)
    record = optlib.load_results("unit_test")
    assert record["meta"]["seeds"] == [0, 1] and record["meta"]["config"]["data"] == "digits"
    restored = ExperimentResult.from_dict(json.loads(json.dumps(record["payload"])))
    assert restored.histories["Adam"][1].step_loss == pytest.approx(result.histories["Adam"][1].step_loss, rel=1e-5)

    live = show_experiment("unit_test", lambda: run(data=data, seeds={"tiny": [0]}), metric="val_accuracy")
    out = capsys.readouterr().out
    assert "Saved full-size results: " in out and "this run (tiny size)" in out
    assert "Ranked by final validation loss" in out or "The sizes disagree" in out
    assert live.size == "tiny"
    figure = matplotlib.pyplot.gcf()
    assert len(figure.axes) == 2 and all(ax.get_title() and ax.get_xlabel() and ax.get_ylabel() for ax in figure.axes)
    matplotlib.pyplot.close("all")


def test_show_experiment_without_saved_results(results_dir, capsys):
    assert show_experiment("nothing_here") is None
    assert "No saved full-size results" in capsys.readouterr().out


def test_diverged_runs_are_counted_not_averaged(results_dir):
    with pytest.warns(optlib.TrainingDiverged):
        result = run(optimizers={"too big": (torch.optim.SGD, {"lr": 1e4})})
    row = result.summary()[0]
    assert row["diverged"] == 2 and math.isnan(row["val_loss_mean"])


def test_scheduler_and_clipping_per_label():
    halve = lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)  # noqa: E731
    result = run(
        optimizers={"plain": OPTIMIZERS["SGD"], "scheduled": OPTIMIZERS["SGD"], "clipped": OPTIMIZERS["SGD"]},
        scheduler={"scheduled": halve},
        clip_grad_norm={"clipped": 1e-3},
        seeds={"tiny": [0]},
    )
    plain, scheduled, clipped = (result.histories[label][0] for label in ("plain", "scheduled", "clipped"))
    assert plain.epochs["lr"] == [0.1, 0.1] and scheduled.epochs["lr"] == [0.1, 0.05]
    assert plain.config["clip_grad_norm"] is None and clipped.config["clip_grad_norm"] == 1e-3
    assert clipped.epochs["lr"] == [0.1, 0.1] and clipped.step_loss[1:] != plain.step_loss[1:]
    assert result.config["clip_grad_norm"] == {"plain": None, "scheduled": None, "clipped": 1e-3}
    everyone = run(clip_grad_norm=1e-3, seeds={"tiny": [0]})
    assert all(runs[0].config["clip_grad_norm"] == 1e-3 for runs in everyone.histories.values())


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"clip_grad_norm": {"Adamm": 1.0}}, "clip_grad_norm"),
        ({"clip_grad_norm": -1.0}, "clip_grad_norm"),
        ({"scheduler": {"sgd": lambda opt: None}}, "scheduler"),
        ({"size": "medium"}, "size"),
        ({"optimizers": {}}, "optimizers"),
        ({"optimizers": {"x": (torch.optim.SGD,)}}, "optimizers"),
        ({"data": "cifar10"}, "data"),
        ({"epochs": {"quick": 1}}, "epochs"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, name):
    with pytest.raises(ValueError, match=name):
        run(**kwargs)


def test_summary_is_an_html_table_in_a_notebook(results_dir):
    result = run(data=load_digits().subset(200, 100), seeds={"tiny": [0]})
    table = result.summary()
    frame = table.to_frame()
    assert list(frame.index) == [row["optimizer"] for row in table]
    assert "final val loss" in frame.columns and "±" in frame["final val loss"].iloc[0]
    html = table._repr_html_()
    assert html.startswith("<table") and "final val loss" in html
    assert "final val loss" in str(table)  # plain text outside a notebook


def _result(size, finals, seeds=(0, 1)):
    """An ExperimentResult whose runs end at the given validation losses (one list per label)."""
    from optlib.training import History

    histories = {}
    for label, losses in finals.items():
        runs = []
        for seed, loss in zip(seeds, losses):
            h = History(optimizer=label, seed=seed)
            h.epochs = {"epoch": [1], "val_loss": [loss], "val_accuracy": [1 - loss / 10], "time": [1.0]}
            runs.append(h)
        histories[label] = runs
    return ExperimentResult(name="unit_test", size=size, histories=histories, seeds=list(seeds))


def test_compare_sizes_says_whether_the_rankings_agree():
    full = _result("full", {"A": [0.10, 0.12], "B": [0.30, 0.32], "C": [0.20, 0.22]})
    agree = optlib.compare_sizes(full, _result("quick", {"A": [0.5], "B": [0.9], "C": [0.7]}, seeds=(0,)))
    assert agree.agree and agree.full_ranking == ["A", "C", "B"]
    assert agree.verdict.startswith("Ranked by final validation loss, both sizes agree: A < C < B")
    assert list(agree.table.index) == ["A", "B", "C"] and agree.table.loc["B", "full: rank"] == 3
    assert agree.table.loc["A", "full: val loss (2 seeds)"] == "0.1100 ± 0.0141"
    disagree = optlib.compare_sizes(full, _result("quick", {"A": [0.9], "B": [0.5], "C": [0.7]}, seeds=(0,)))
    assert not disagree.agree and "The sizes disagree" in disagree.verdict and "B < C < A" in disagree.verdict


def test_thinned_history_keeps_the_ends_and_the_step_count():
    from optlib.training import History

    h = History(optimizer="SGD", step_loss=[float(i) for i in range(1, 1001)])
    h.epochs = {"epoch": list(range(1, 101)), "val_loss": [1.0 / e for e in range(1, 101)]}
    thin = h.thinned(10)
    assert thin.n_steps == 1000 and thin.steps_per_loss == 100 and len(thin.step_loss) == 10
    assert thin.step_loss[0] == pytest.approx(50.5) and thin.step_loss[-1] == pytest.approx(950.5)
    assert len(thin.epochs["epoch"]) == 10 and thin.epochs["epoch"][0] == 1 and thin.epochs["epoch"][-1] == 100
    assert thin.final("val_loss") == h.final("val_loss")
    again = History.from_dict(json.loads(json.dumps(thin.to_dict())))
    assert again.n_steps == 1000 and again.steps_per_loss == 100
    assert h.thinned(5000).step_loss == h.step_loss  # short enough: unchanged
    with pytest.raises(ValueError, match="max_points"):
        h.thinned(1)
