"""The small networks the experiments train, each with a seeded initialisation.

Every model takes an optional ``seed``: with it, the initial weights depend on that seed
alone (the global random state is left untouched); without it, they come from torch's
global generator, as for any ``torch.nn`` module. Sizes are arguments so that the quick
experiments stay tiny and the full ones can grow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MLP", "MNIST1DCNN", "MNISTCNN", "CharTransformer", "LinearModel", "count_parameters"]

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "silu": nn.SiLU}


@contextmanager
def _seeded(seed: int | None):
    """Run the block with torch's generator seeded, restoring the caller's state afterwards."""
    if seed is None:
        yield
        return
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ValueError(f"Invalid seed: {seed!r}; seed must be an integer in [0, 2**63) or None")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"Invalid {name}: {value!r}; {name} must be an integer >= 1")
    return value


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """The number of scalar parameters of ``model`` (only those with ``requires_grad`` by default)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


class LinearModel(nn.Module):
    """An affine map ``x -> W x + b``: linear or logistic regression, depending on the loss."""

    def __init__(self, in_features: int, out_features: int = 1, bias: bool = True, seed: int | None = None):
        super().__init__()
        _check_positive_int("in_features", in_features)
        _check_positive_int("out_features", out_features)
        with _seeded(seed):
            self.linear = nn.Linear(in_features, out_features, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x.flatten(1))


class MLP(nn.Module):
    """A fully connected network: ``in_features -> hidden[0] -> ... -> out_features``.

    Inputs of any shape ``(batch, ...)`` are flattened first, so the same model takes 8x8
    digits, MNIST-1D signals or 28x28 images.
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int] = (128,),
        out_features: int = 10,
        activation: str = "relu",
        seed: int | None = None,
    ):
        super().__init__()
        _check_positive_int("in_features", in_features)
        _check_positive_int("out_features", out_features)
        if isinstance(hidden, int):
            hidden = (hidden,)
        for width in hidden:
            _check_positive_int("hidden width", width)
        if activation not in _ACTIVATIONS:
            raise ValueError(f"Invalid activation: {activation!r}; activation must be one of {sorted(_ACTIVATIONS)}")
        widths = [in_features, *hidden, out_features]
        layers: list[nn.Module] = [nn.Flatten()]
        with _seeded(seed):
            for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
                layers.append(nn.Linear(fan_in, fan_out))
                if i < len(widths) - 2:
                    layers.append(_ACTIVATIONS[activation]())
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class MNIST1DCNN(nn.Module):
    """The 1-D convolutional baseline of MNIST-1D (Greydanus & Kobak, 2020).

    Three convolutions (kernel 5 then 3, stride 2) with ReLU, then a linear classifier.
    Takes ``(batch, length)`` signals or ``(batch, 1, length)``.
    """

    def __init__(self, channels: int = 32, n_classes: int = 10, input_length: int = 40, seed: int | None = None):
        super().__init__()
        _check_positive_int("channels", channels)
        _check_positive_int("n_classes", n_classes)
        if isinstance(input_length, bool) or not isinstance(input_length, int) or input_length < 8:
            raise ValueError(f"Invalid input_length: {input_length!r}; input_length must be an integer >= 8")
        length = input_length
        for kernel in (5, 3, 3):
            length = (length + 2 - kernel) // 2 + 1
        with _seeded(seed):
            self.features = nn.Sequential(
                nn.Conv1d(1, channels, 5, stride=2, padding=1),
                nn.ReLU(),
                nn.Conv1d(channels, channels, 3, stride=2, padding=1),
                nn.ReLU(),
                nn.Conv1d(channels, channels, 3, stride=2, padding=1),
                nn.ReLU(),
            )
            self.classifier = nn.Linear(channels * length, n_classes)
        self.input_length = input_length

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(1)
        return self.classifier(self.features(x).flatten(1))


class MNISTCNN(nn.Module):
    """A small LeNet-style network for ``(batch, 1, 28, 28)`` images.

    Two 3x3 convolutions, each followed by ReLU and 2x2 max pooling, then a hidden linear
    layer and the classifier.
    """

    def __init__(
        self, n_classes: int = 10, channels: tuple[int, int] = (16, 32), hidden: int = 64, seed: int | None = None
    ):
        super().__init__()
        _check_positive_int("n_classes", n_classes)
        _check_positive_int("hidden", hidden)
        if len(channels) != 2:
            raise ValueError(f"Invalid channels: {channels!r}; channels must be a pair of integers >= 1")
        c1, c2 = (_check_positive_int("channels", c) for c in channels)
        with _seeded(seed):
            self.features = nn.Sequential(
                nn.Conv2d(1, c1, 3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Conv2d(c1, c2, 3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2),
            )
            self.classifier = nn.Sequential(
                nn.Flatten(), nn.Linear(c2 * 7 * 7, hidden), nn.ReLU(), nn.Linear(hidden, n_classes)
            )

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        return self.classifier(self.features(x))


class _CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float):
        super().__init__()
        self.qkv = nn.Linear(n_embd, 3 * n_embd)
        self.proj = nn.Linear(n_embd, n_embd)
        self.n_head = n_head
        self.dropout = dropout
        self.proj_dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        batch, time, channels = x.shape
        q, k, v = self.qkv(x).split(channels, dim=2)
        # (batch, head, time, head_dim): the layout scaled_dot_product_attention expects.
        q, k, v = (t.view(batch, time, self.n_head, channels // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        return self.proj_dropout(self.proj(y.transpose(1, 2).reshape(batch, time, channels)))


class _Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = _CausalSelfAttention(n_embd, n_head, dropout)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = nn.Sequential(
            nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd), nn.Dropout(dropout)
        )

    def forward(self, x: Tensor) -> Tensor:
        # Pre-norm residual blocks, as GPT-2: gradients reach early layers through the identity path.
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class CharTransformer(nn.Module):
    """A minimal GPT for characters, after Karpathy's nanoGPT (and GPT-2, Radford et al., 2019).

    Token and position embeddings, ``n_layer`` pre-norm blocks of causal self-attention
    (``torch.nn.functional.scaled_dot_product_attention``) and a 4x GELU MLP, a final layer
    norm, and an output layer tied to the token embedding. Weights start as in GPT-2:
    normal with std 0.02, and the residual projections scaled by ``1/sqrt(2 n_layer)``.

    ``forward(idx, targets=None)`` returns ``(logits, loss)``; ``loss`` is the mean
    cross-entropy of the next character when ``targets`` are given, else ``None``.
    """

    def __init__(
        self,
        vocab_size: int,
        block_size: int = 64,
        n_layer: int = 2,
        n_head: int = 4,
        n_embd: int = 128,
        dropout: float = 0.0,
        seed: int | None = None,
    ):
        super().__init__()
        for name, value in (
            ("vocab_size", vocab_size),
            ("block_size", block_size),
            ("n_layer", n_layer),
            ("n_head", n_head),
            ("n_embd", n_embd),
        ):
            _check_positive_int(name, value)
        if n_embd % n_head:
            raise ValueError(f"Invalid n_embd: {n_embd}; n_embd must be a multiple of n_head = {n_head}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"Invalid dropout: {dropout!r}; dropout must be in [0, 1)")
        self.block_size = block_size
        with _seeded(seed):
            self.token_embedding = nn.Embedding(vocab_size, n_embd)
            self.position_embedding = nn.Embedding(block_size, n_embd)
            self.dropout = nn.Dropout(dropout)
            self.blocks = nn.ModuleList(_Block(n_embd, n_head, dropout) for _ in range(n_layer))
            self.ln_f = nn.LayerNorm(n_embd)
            self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
            self.lm_head.weight = self.token_embedding.weight  # weight tying (Press & Wolf, 2017)
            self.apply(self._init_weights)
            for name, parameter in self.named_parameters():
                if name.endswith("attn.proj.weight") or name.endswith("mlp.2.weight"):
                    nn.init.normal_(parameter, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: Tensor, targets: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        time = idx.shape[1]
        if time > self.block_size:
            raise ValueError(f"Invalid idx: sequence length {time} exceeds block_size = {self.block_size}")
        positions = torch.arange(time, device=idx.device)
        x = self.dropout(self.token_embedding(idx) + self.position_embedding(positions))
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        loss = None if targets is None else F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return logits, loss

    @torch.no_grad()
    def generate(
        self, idx: Tensor, max_new_tokens: int, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> Tensor:
        """Continue each row of ``idx`` by ``max_new_tokens`` characters sampled from the model."""
        _check_positive_int("max_new_tokens", max_new_tokens)
        if not temperature > 0:
            raise ValueError(f"Invalid temperature: {temperature!r}; temperature must be > 0")
        was_training = self.training
        self.eval()
        for _ in range(max_new_tokens):
            logits, _ = self(idx[:, -self.block_size :])
            probabilities = F.softmax(logits[:, -1, :] / temperature, dim=-1)
            next_id = torch.multinomial(probabilities.cpu(), 1, generator=generator).to(idx.device)
            idx = torch.cat([idx, next_id], dim=1)
        self.train(was_training)
        return idx
