import json
import math

import pytest
import torch

import optlib
from optlib import results as R


@pytest.fixture
def results_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTLIB_RESULTS", str(tmp_path))
    return tmp_path


def test_results_dir_follows_environment(results_dir):
    assert R.RESULTS_DIR == results_dir == R.results_dir()


def test_default_results_dir_is_under_data(monkeypatch):
    monkeypatch.delenv("OPTLIB_RESULTS", raising=False)
    monkeypatch.delenv("OPTLIB_DATA", raising=False)
    assert R.results_dir().parts[-2:] == ("data", "results")


def test_save_load_round_trip(results_dir):
    payload = {"curve": [1.0, 0.5, math.nan], "tensor": torch.tensor([1.0, 2.0]), "pair": (1, 2)}
    path = R.save_results("unit_test", payload, seeds=range(5), config={"lr": 1e-3}, size="full")
    assert path == results_dir / "unit_test.json"
    json.loads(path.read_text())  # strict JSON: no NaN literals
    record = R.load_results("unit_test")
    assert record["payload"] == {"curve": [1.0, 0.5, None], "tensor": [1.0, 2.0], "pair": [1, 2]}
    meta = record["meta"]
    assert meta["seeds"] == [0, 1, 2, 3, 4] and meta["config"] == {"lr": 1e-3} and meta["size"] == "full"
    assert meta["torch"] == torch.__version__ and meta["optlib"] == optlib.__version__
    assert meta["device"] == optlib.device_label() and meta["threads"] == torch.get_num_threads()
    assert not list(results_dir.glob("*.partial"))


def test_missing_results_are_none(results_dir):
    assert R.load_results("never_saved") is None


def test_note_names_device_torch_seeds_and_date():
    record = {
        "meta": {
            "device": "NVIDIA H100 80GB HBM3",
            "torch": "2.13.0",
            "seeds": [0, 1, 2, 3, 4],
            "size": "full",
            "created_utc": "2026-11-24T10:00:00+00:00",
        }
    }
    assert R.results_note(record) == (
        "Saved full-size results: NVIDIA H100 80GB HBM3, torch 2.13.0, seeds 0\u20134, run on 2026-11-24."
    )
    record["meta"]["config"] = {"wall_seconds": 252.0}
    assert R.results_note(record).endswith("run on 2026-11-24 in 4.2 min.")
    record["meta"]["seeds"] = [3]
    assert "seed 3," in R.results_note(record)
    record["meta"]["seeds"] = [0, 2, 7]
    assert "seeds 0, 2, 7," in R.results_note(record)


@pytest.mark.parametrize("name", ["", "../escape", "a b", "x.json"])
def test_bad_names_are_rejected(results_dir, name):
    with pytest.raises(ValueError, match="name"):
        R.save_results(name, {}, seeds=[0], config={})


def test_corrupt_file_is_reported(results_dir):
    (results_dir / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken.json"):
        R.load_results("broken")


def test_device_label_says_cores_and_model_on_cpu():
    label = optlib.device_label("cpu")
    cores, _, rest = label.partition("-core CPU (")
    assert int(cores) >= 1 and rest.endswith(")") and len(rest) > 1, label


# ----------------------------------------------------------------------------- regenerate

from optlib import benchmark as bm  # noqa: E402
from optlib import regenerate as G  # noqa: E402


def test_every_chapter_experiment_is_in_the_regenerate_plan():
    """A chapter that saves full-size results must be one the regenerate command runs (and its names must match)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    planned = {name: run.notebook for run in G.FULL_SIZE_RUNS for name in run.names}
    for notebook in sorted((root / "chapters").glob("[0-9][0-9]_*.ipynb")):
        text = notebook.read_text()
        saved = set(re.findall(r'(?:show_experiment|save_results|compare_optimizers)\(\\"(ch\d\d_[a-z0-9_]+)', text))
        for name in saved:
            assert planned.get(name) == f"chapters/{notebook.name}", (notebook.name, name)
    for run in G.FULL_SIZE_RUNS:
        assert (root / run.notebook).is_file(), run.notebook


def test_plan_skips_gpu_only_runs_on_cpu():
    todo, skipped = G.plan("cpu")
    assert skipped and all(r.gpu_only for r in skipped) and not any(r.gpu_only for r in todo)
    todo_gpu, skipped_gpu = G.plan("cuda")
    assert not skipped_gpu and len(todo_gpu) == len(G.FULL_SIZE_RUNS)
    assert not any(r.command for r in skipped)  # the full benchmark runs on both, with different problems
    [benchmark] = [r for r in todo if r.argv("cpu", 2)]
    cpu, gpu = benchmark.argv("cpu", 2), benchmark.argv("cuda", 2)
    fits = cpu[cpu.index("--problems") + 1 : cpu.index("--jobs")]
    assert cpu[0] == "optlib.benchmark" and cpu[-2:] == ("--jobs", "2") and "--seeds" in cpu
    assert list(fits) == bm.cpu_full_problems() and 0 < len(fits) < len(bm.PROBLEMS)
    assert all(bm.PROBLEMS[p].full_needs_gpu for p in bm.PROBLEMS if p not in fits)
    assert "--problems" not in gpu  # a GPU runs every problem
    assert [r.chapter for r in G.plan("cpu", ["05", "ch09_adam"])[0]] == ["05_momentum", "09_adam"]
    with pytest.raises(ValueError, match="--only"):
        G.plan("cpu", ["99_nothing"])


def test_missing_note_gives_the_command_and_why():
    assert "regenerate --only ch05_momentum" in G.missing_note("ch05_momentum")
    assert [r.names for r in G.plan("cuda", ["ch13_mnist1d_paper"])[0]] == [("ch13_mnist1d_paper",)]
    gpu = G.missing_note("ch11_schedules")
    assert "needs a GPU" in gpu and "--device cuda" in gpu
    assert R.missing_results_note("ch05_momentum") == G.missing_note("ch05_momentum")


def test_list_prints_the_plan_and_runs_nothing(capsys):
    assert G.main(["regenerate", "--device", "cpu", "--list"]) == 0
    out = capsys.readouterr().out
    assert "core-minutes" in out and "skipped on a CPU" in out and "01_optimization_problem" in out
    assert "benchmark problem shakespeare_transformer" in out and "python -m optlib.benchmark" in out


def test_commands_run_before_the_notebooks_that_read_them(monkeypatch, capsys):
    order = []

    def fake(run, root, out_dir, env, command=()):
        order.append("command" if command else run.chapter)
        return run, 0.0, None

    monkeypatch.setattr(G, "_execute", fake)
    monkeypatch.setattr(G, "_cuda_available", lambda: True)
    G.main(["regenerate", "--device", "cuda", "--only", "13_comparison", "--jobs", "2"])
    assert order == ["command", "13_comparison"]


def test_regenerate_executes_a_chapter(tmp_path, monkeypatch):
    """The real path, on a short chapter at the quick size: the notebook runs in a fresh kernel."""
    monkeypatch.setenv("OPTLIB_RESULTS", str(tmp_path))
    root = G._repo_root()
    run = G.FullSizeRun("chapters/05_momentum.ipynb", ("ch05_momentum",), 1.0)
    env = dict(__import__("os").environ, OPTLIB_SIZE="quick", OMP_NUM_THREADS="1")
    done, seconds, error = G._execute(run, root, tmp_path, env)
    assert error is None and seconds > 0 and (tmp_path / "05_momentum.ipynb").is_file()
