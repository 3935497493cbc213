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


def test_language_model_training_records_and_repeats():
    text = load_shakespeare(block_size=16)

    def run():
        model = CharTransformer(text.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16, seed=0)
        return train_language_model(
            model,
            torch.optim.AdamW(model.parameters(), lr=1e-2),
            text,
            max_steps=20,
            batch_size=8,
            eval_every=10,
            eval_batches=2,
            progress=False,
        )

    history = run()
    assert history.n_steps == 20 and history.epochs["step"] == [10.0, 20.0]
    assert history.epochs["val_loss"][-1] < math.log(text.vocab_size)
    assert history.step_loss == run().step_loss


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
