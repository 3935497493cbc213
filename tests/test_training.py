import functools
import json
import math

import pytest
import torch

from optlib.data import load_digits, load_shakespeare, make_regression
from optlib.models import MLP, CharTransformer, LinearModel
from optlib.training import History, TrainingDiverged, evaluate, train, train_language_model


@pytest.fixture(scope="module")
def digits():
    return load_digits().subset(600, 200)


def test_adam_reduces_loss_on_digits(digits):
    model = MLP(64, hidden=(32,), seed=0)
    before = evaluate(model, digits.X_val, digits.y_val)
    history = train(
        model, torch.optim.Adam(model.parameters(), lr=1e-2), digits, epochs=3, batch_size=32, progress=False
    )
    assert not history.diverged and history.message is None
    assert history.n_steps == 3 * math.ceil(600 / 32)
    assert history.epochs["epoch"] == [1.0, 2.0, 3.0]
    assert history.final("val_loss") < 0.5 * before["loss"]
    assert history.final("val_accuracy") > 0.8 > before["accuracy"]
    assert history.epochs["train_loss"][-1] < history.epochs["train_loss"][0]
    assert history.epochs["time"] == sorted(history.epochs["time"])
    assert history.optimizer == "Adam" and history.hyperparameters["lr"] == 1e-2


def test_huge_learning_rate_is_reported_as_divergence(digits):
    model = MLP(64, hidden=(32,), seed=0)
    with pytest.warns(
        TrainingDiverged, match=r"Training diverged at step \d+ \(loss = .+\) with lr = 10000: lower the learning rate"
    ):
        history = train(model, torch.optim.SGD(model.parameters(), lr=1e4), digits, epochs=2, progress=False)
    assert history.diverged
    step = int(history.message.split("step ")[1].split(" ")[0])
    assert len(history.step_loss) == step  # nothing recorded after the divergent step
    last = history.step_loss[-1]
    assert not math.isfinite(last) or last > 1e6 * history.step_loss[0]


def test_full_batch_is_gradient_descent():
    data = make_regression(n_samples=200, n_features=5, noise=0.0, seed=0)
    model = LinearModel(5, seed=0)
    history = train(model, functools.partial(torch.optim.SGD, lr=0.1), data, epochs=30, batch_size=None, progress=False)
    assert history.n_steps == 30 and history.epochs["step"][-1] == 30
    # Deterministic full-batch descent on a convex quadratic: every step lowers the loss.
    assert all(b < a for a, b in zip(history.step_loss, history.step_loss[1:]))
    assert "val_accuracy" not in history.epochs
    assert history.final("val_loss") < 0.01


def test_scheduler_changes_recorded_lr(digits):
    model = MLP(64, hidden=(16,), seed=0)
    history = train(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        digits,
        epochs=3,
        progress=False,
        scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5),
    )
    assert history.epochs["lr"] == pytest.approx([0.1, 0.05, 0.025])


def test_step_scheduler_and_eval_every(digits):
    model = MLP(64, hidden=(16,), seed=0)
    history = train(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        digits,
        epochs=1,
        batch_size=100,
        eval_every=2,
        scheduler_step="step",
        progress=False,
        scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 / (1 + step)),
    )
    assert history.epochs["step"] == [2.0, 4.0, 6.0]
    assert history.epochs["lr"] == pytest.approx([0.1 / 2, 0.1 / 4, 0.1 / 6])


def test_max_steps_stops_within_an_epoch(digits):
    model = MLP(64, hidden=(16,), seed=0)
    history = train(model, torch.optim.SGD(model.parameters(), lr=0.1), digits, epochs=5, max_steps=4, progress=False)
    assert history.n_steps == 4 and history.epochs["step"] == [4.0]


def test_same_seed_same_history(digits):
    def run(seed):
        model = MLP(64, hidden=(16,), seed=0)
        h = train(
            model,
            torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
            digits,
            epochs=2,
            seed=seed,
            progress=False,
        )
        return h.step_loss, h.epochs["val_loss"]

    assert run(0) == run(0)
    assert run(0) != run(1)  # the seed sets the order of the mini-batches


def test_history_round_trips_through_json(digits):
    model = MLP(64, hidden=(16,), seed=0)
    history = train(model, torch.optim.Adam(model.parameters()), digits, epochs=2, progress=False)
    history.step_loss.append(math.nan)
    restored = History.from_dict(json.loads(json.dumps(history.to_dict(), allow_nan=False)))
    assert restored.epochs == history.epochs and restored.optimizer == "Adam"
    assert restored.step_loss[:-1] == history.step_loss[:-1] and math.isnan(restored.step_loss[-1])
    assert restored.best("val_accuracy") == max(history.epochs["val_accuracy"])
    assert restored.best("val_loss") == min(history.epochs["val_loss"])
    with pytest.raises(ValueError, match="metric"):
        restored.final("val_perplexity")


def test_evaluate_restores_training_mode(digits):
    model = MLP(64, hidden=(16,), seed=0)
    model.train()
    metrics = evaluate(model, digits.X_val, digits.y_val, batch_size=64)
    assert model.training and set(metrics) == {"loss", "accuracy"}
    whole = evaluate(model, digits.X_val, digits.y_val, batch_size=1000)
    assert metrics["loss"] == pytest.approx(whole["loss"], rel=1e-5)


def _train_tiny_language_model(text, **kwargs):
    """A one-block, 16-wide transformer trained with AdamW(lr=1e-2) on batches of 8."""
    model = CharTransformer(text.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16, seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    return train_language_model(model, optimizer, text, batch_size=8, progress=False, **kwargs)


def test_language_model_training_records_and_repeats():
    text = load_shakespeare(block_size=16)

    def run():
        return _train_tiny_language_model(text, max_steps=20, eval_every=10, eval_batches=2)

    history = run()
    assert history.n_steps == 20 and history.epochs["step"] == [10.0, 20.0]
    assert history.epochs["val_loss"][-1] < math.log(text.vocab_size)
    assert history.step_loss == run().step_loss


def test_clip_grad_norm_limits_each_step_to_lr_times_c():
    # Plain SGD moves the parameters by lr * g; clipped, by lr * g * min(1, c / ||g||) over all
    # parameters together, so every step's length is exactly lr * c while ||g|| > c.
    data = make_regression(n_samples=100, n_features=5, noise=0.0, seed=0)
    lr, c = 0.1, 1e-3
    model = LinearModel(5, seed=0)
    snapshots = []
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    original_step = optimizer.step

    def recording_step(*args, **kwargs):
        snapshots.append(torch.cat([p.detach().flatten().clone() for p in model.parameters()]))
        norm = torch.cat([p.grad.flatten() for p in model.parameters()]).norm()
        assert norm == pytest.approx(c, rel=1e-5)  # the loop clipped before the step
        return original_step(*args, **kwargs)

    optimizer.step = recording_step
    history = train(model, optimizer, data, epochs=5, batch_size=None, clip_grad_norm=c, progress=False)
    snapshots.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    lengths = [(b - a).norm().item() for a, b in zip(snapshots, snapshots[1:])]
    # float32 parameters of size ~0.5 resolve a difference of 1e-4 to about 1e-3 relative
    assert len(lengths) == 5 and lengths == pytest.approx([lr * c] * 5, rel=1e-3)
    assert history.config["clip_grad_norm"] == c
    # the recorded norms are the ones before clipping: the full gradient of a slowly moving model
    assert len(history.grad_norm) == 5 and all(norm > 100 * c for norm in history.grad_norm)
    assert History.from_dict(json.loads(json.dumps(history.to_dict()))).grad_norm == history.grad_norm
    unclipped = train(
        LinearModel(5, seed=0),
        functools.partial(torch.optim.SGD, lr=lr),
        data,
        epochs=5,
        batch_size=None,
        progress=False,
    )
    assert unclipped.config["clip_grad_norm"] is None and unclipped.grad_norm == []
    assert unclipped.step_loss[-1] < history.step_loss[-1]  # the clipped run moved far less


def test_diverged_run_keeps_one_grad_norm_per_recorded_step(digits):
    model = MLP(64, hidden=(32,), seed=0)
    with pytest.warns(TrainingDiverged):
        history = train(model, torch.optim.SGD(model.parameters(), lr=1e6), digits, clip_grad_norm=1.0, progress=False)
    assert history.diverged and len(history.grad_norm) == len(history.step_loss) > 0


def test_clip_grad_norm_in_the_language_model_loop():
    text = load_shakespeare(block_size=16)

    def run(clip):
        return _train_tiny_language_model(text, max_steps=5, eval_every=5, eval_batches=1, clip_grad_norm=clip)

    clipped, free, loose = run(1e-3), run(None), run(1e6)
    assert clipped.config["clip_grad_norm"] == 1e-3 and free.config["clip_grad_norm"] is None
    assert loose.step_loss == free.step_loss  # a threshold above every gradient norm changes nothing
    # Adam's step hardly depends on the gradient's scale, but clipping also shrinks it next to eps: the runs differ.
    assert clipped.step_loss[0] == free.step_loss[0] and clipped.step_loss[1:] != free.step_loss[1:]


@pytest.mark.parametrize("clip", [0, -1.0, math.inf, math.nan, True, "1"])
def test_bad_clip_grad_norm_names_itself(digits, clip):
    model = MLP(64, hidden=(4,), seed=0)
    with pytest.raises(ValueError, match="clip_grad_norm"):
        train(model, torch.optim.SGD(model.parameters(), lr=0.1), digits, clip_grad_norm=clip, progress=False)
    text = load_shakespeare(block_size=8)
    lm = CharTransformer(text.vocab_size, block_size=8, n_layer=1, n_head=1, n_embd=8, seed=0)
    with pytest.raises(ValueError, match="clip_grad_norm"):
        train_language_model(lm, torch.optim.SGD(lm.parameters(), lr=0.1), text, clip_grad_norm=clip, progress=False)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"scheduler_step": "batch"}, "scheduler_step"),
        ({"max_steps": -1}, "max_steps"),
    ],
)
def test_bad_arguments_name_themselves(digits, kwargs, name):
    model = MLP(64, hidden=(4,), seed=0)
    with pytest.raises(ValueError, match=name):
        train(model, torch.optim.SGD(model.parameters(), lr=0.1), digits, progress=False, **kwargs)
