import pytest
import torch

from optlib.models import MLP, MNIST1DCNN, MNISTCNN, CharTransformer, LinearModel, count_parameters


@pytest.mark.parametrize(
    "make, x, out_shape",
    [
        (lambda s: MLP(64, hidden=(32, 16), seed=s), torch.randn(5, 64), (5, 10)),
        (lambda s: MLP(784, seed=s), torch.randn(5, 1, 28, 28), (5, 10)),
        (lambda s: MNIST1DCNN(channels=8, seed=s), torch.randn(5, 40), (5, 10)),
        (lambda s: MNISTCNN(channels=(4, 8), hidden=16, seed=s), torch.randn(5, 1, 28, 28), (5, 10)),
        (lambda s: LinearModel(7, 3, seed=s), torch.randn(5, 7), (5, 3)),
    ],
)
def test_forward_shapes_and_seeded_init(make, x, out_shape):
    a, b, c = make(0), make(0), make(1)
    assert a(x).shape == out_shape
    assert torch.equal(a(x), b(x))
    assert not torch.equal(a(x), c(x))


def test_seeded_init_leaves_global_generator_alone():
    torch.manual_seed(5)
    expected = torch.rand(1)
    torch.manual_seed(5)
    MLP(10, seed=0)
    assert torch.equal(torch.rand(1), expected)


def test_parameter_counts():
    assert count_parameters(LinearModel(7, 3)) == 7 * 3 + 3
    assert count_parameters(MLP(64, hidden=(32,), out_features=10)) == 64 * 32 + 32 + 32 * 10 + 10
    # conv1 (1->8, k5), conv2 and conv3 (8->8, k3), linear over 5 positions
    assert count_parameters(MNIST1DCNN(channels=8)) == (8 * 5 + 8) + 2 * (8 * 8 * 3 + 8) + (8 * 5 * 10 + 10)
    model = MLP(4, hidden=(3,), out_features=2)
    model.net[1].weight.requires_grad_(False)
    assert count_parameters(model) == 3 + 3 * 2 + 2
    assert count_parameters(model, trainable_only=False) == 4 * 3 + 3 + 3 * 2 + 2


def test_char_transformer_loss_causality_and_tied_weights():
    model = CharTransformer(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16, seed=0)
    idx = torch.randint(11, (3, 8), generator=torch.Generator().manual_seed(0))
    logits, loss = model(idx, idx)
    assert logits.shape == (3, 8, 11)
    assert model(idx)[1] is None
    assert abs(loss.item() - torch.log(torch.tensor(11.0)).item()) < 0.3  # small init: near-uniform predictions
    changed = idx.clone()
    changed[:, -1] = (changed[:, -1] + 1) % 11
    torch.testing.assert_close(model(changed)[0][:, :-1], logits[:, :-1])  # the past cannot see the future
    assert model.lm_head.weight is model.token_embedding.weight
    n = 16
    per_block = 2 * 2 * n + (n * 3 * n + 3 * n) + (n * n + n) + (n * 4 * n + 4 * n) + (4 * n * n + n)
    assert count_parameters(model) == 11 * n + 8 * n + 2 * per_block + 2 * n


def test_char_transformer_generate_extends_sequences():
    model = CharTransformer(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=8, seed=0)
    out = model.generate(torch.zeros(2, 1, dtype=torch.long), 6, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 7) and int(out.max()) < 5


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: MLP(0), "in_features"),
        (lambda: MLP(4, activation="swish"), "activation"),
        (lambda: CharTransformer(10, n_embd=30, n_head=4), "n_embd"),
        (lambda: CharTransformer(10, dropout=1.0), "dropout"),
        (lambda: MNIST1DCNN(channels=0), "channels"),
    ],
)
def test_bad_arguments_name_themselves(make, name):
    with pytest.raises(ValueError, match=name):
        make()


def test_sequence_longer_than_block_size_is_rejected():
    model = CharTransformer(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=8)
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 5, dtype=torch.long))
