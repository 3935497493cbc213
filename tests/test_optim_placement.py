"""Where optlib puts a large CPU parameter's state (optlib/optim/_placement.py), and that the
placed state changes nothing but speed: the same trajectory as torch.optim on every path,
a state_dict that resumes bit for bit, and a fused step that still calls its kernel directly.

The harness's parameters (optim_harness.py) are all smaller than the size from which state
is placed, so these tests use parameters above it.
"""

from __future__ import annotations

import io

import pytest
import torch

import optlib
from optlib.optim import _compile, _placement

# Two parameters above the size from which state is placed (a matrix and a vector), and
# one below it, so that one fused chunk holds both kinds.
SHAPES = [(260, 260), (70_000,), (5,)]
PLACED = [True, True, False]
CASES = [
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("Adagrad", dict(lr=0.1, initial_accumulator_value=0.1)),
    ("RMSprop", dict(lr=0.01, momentum=0.9, centered=True)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("AdamW", dict(lr=0.01)),
    ("NAdam", dict(lr=0.01, weight_decay=0.01)),
]
FUSED = {"SGD", "Adagrad", "Adam", "AdamW", "NAdam", "NesterovAdamW"}


def page_offset(t: torch.Tensor) -> int:
    return t.data_ptr() % _placement.PAGE_BYTES


def make_params(seed: int = 0) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=g)) for s in SHAPES]


def run(opt, params, steps: int, first: int = 0) -> None:
    for t in range(first, first + steps):
        g = torch.Generator().manual_seed(t)
        for p in params:
            p.grad = p.detach() + 0.5 * torch.randn(p.shape, generator=g)
        opt.step()


def test_the_parameters_here_straddle_the_size_from_which_state_is_placed():
    sizes = [torch.Size(s).numel() * 4 for s in SHAPES]
    assert [size >= _placement.MIN_BYTES for size in sizes] == PLACED


@pytest.mark.parametrize("name", ["Adagrad", "RMSprop", "Adam", "AdamW", "NAdam", "NesterovAdamW", "SGD"])
def test_each_state_tensor_of_a_large_cpu_parameter_starts_its_own_kib_of_the_page(name):
    """θ, g, m, v at one offset in their pages make a CPU core stall each load on the other
    streams' stores (4K aliasing); each state tensor starts slot KiB past θ's offset."""
    params = make_params()
    kwargs = dict(momentum=0.9, fused=True) if name == "SGD" else {}  # SGD creates its buffer in its update
    kwargs.update(dict(momentum=0.9, centered=True) if name == "RMSprop" else {})
    kwargs.update(dict(amsgrad=True) if name == "Adam" else {})
    opt = getattr(optlib, name)(params, lr=0.01, **kwargs)
    run(opt, params, 1)
    for p, placed in zip(params, PLACED):
        state = [v for v in opt.state[p].values() if isinstance(v, torch.Tensor) and v.shape == p.shape]
        assert state, f"{name} keeps no state of the parameter's shape"
        offsets = [(page_offset(v) - page_offset(p)) % _placement.PAGE_BYTES for v in state]
        if placed:
            assert sorted(offsets) == [k * _placement.STAGGER_BYTES for k in range(1, len(state) + 1)], offsets
        else:  # a small parameter's state is ordinary: its own storage, nothing around it
            assert all(v.storage_offset() == 0 and v.untyped_storage().nbytes() == v.nbytes for v in state)


def test_state_is_ordinary_where_its_place_is_not_ours_to_choose():
    big = torch.randn(300, 300)
    for p in (big.t(), big[:, ::2], big.to(torch.float64)[:8], torch.randn(4)):  # strided, or small
        s = _placement.state_like(p, 1)
        ordinary = torch.zeros_like(p, memory_format=torch.preserve_format)
        assert s.storage_offset() == 0 and s.stride() == ordinary.stride() and torch.equal(s, ordinary)
    placed = _placement.state_like(big, 2, fill=0.25)
    assert placed.shape == big.shape and placed.is_contiguous() and bool((placed == 0.25).all())
    assert (page_offset(placed) - page_offset(big)) % _placement.PAGE_BYTES == 2 * _placement.STAGGER_BYTES
    complex_state = _placement.state_like(torch.randn(200, 200, dtype=torch.complex64), 1, fill=complex(0.1, 0.1))
    assert complex_state.dtype == torch.complex64 and bool((complex_state == complex(0.1, 0.1)).all())


@pytest.mark.parametrize("path", ["loop", "foreach", "fused"])
@pytest.mark.parametrize("name, kwargs", CASES, ids=[c[0] for c in CASES])
def test_placed_state_follows_torch_optim(name, kwargs, path):
    if path == "fused" and name not in FUSED:
        pytest.skip(f"{name} has no fused path")
    options = dict(foreach=False) if path == "loop" else dict(foreach=True) if path == "foreach" else dict(fused=True)
    ours, theirs = make_params(), make_params()
    opt_ours = getattr(optlib, name)(ours, **kwargs, **options)
    opt_theirs = getattr(torch.optim, name)(theirs, **kwargs, foreach=False)
    run(opt_ours, ours, 5)
    run(opt_theirs, theirs, 5)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a.detach(), b.detach())
        for key, value in opt_theirs.state[b].items():
            torch.testing.assert_close(opt_ours.state[a][key], value, msg=lambda m, key=key: f"{key}: {m}")


@pytest.mark.parametrize("fused", [False, True], ids=["loop", "fused"])
def test_placed_state_resumes_bit_for_bit_from_a_saved_state_dict(fused):
    params, straight = make_params(), make_params()
    opt = optlib.AdamW(params, lr=0.01, fused=fused)
    opt_straight = optlib.AdamW(straight, lr=0.01, fused=fused)
    run(opt, params, 3)
    run(opt_straight, straight, 6)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    resumed = make_params()
    with torch.no_grad():
        for r, p in zip(resumed, params):
            r.copy_(p)
    opt_resumed = optlib.AdamW(resumed, lr=0.01, fused=fused)
    opt_resumed.load_state_dict(torch.load(buffer, weights_only=True))
    run(opt_resumed, resumed, 3, first=3)
    for a, b in zip(resumed, straight):
        assert torch.equal(a, b)
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(opt_resumed.state[a][key], opt_straight.state[b][key])


@pytest.mark.parametrize("called", ["the kernel", "Inductor's call"])
def test_a_fused_step_on_placed_state_calls_its_graph_directly_and_follows_the_loop(monkeypatch, called):
    """Placed state starts inside its storage, so Dynamo makes its storage offset an input of
    the graph; the graph is still called directly (the bound C++ kernel, or Inductor's call as
    on CUDA) and follows the loop."""
    from optlib.optim import adam

    monkeypatch.setattr(adam._adam_fused_kernel, "_graphs", {})  # compiled for this state
    if called == "Inductor's call":
        monkeypatch.setattr(_compile, "_bind_kernel", lambda *args: None)
    fused, loop = make_params(), make_params()
    opt_fused = optlib.NesterovAdamW(fused, lr=0.01, weight_decay=0.1, fused=True)
    opt_loop = optlib.NesterovAdamW(loop, lr=0.01, weight_decay=0.1, foreach=False)
    run(opt_fused, fused, 4)
    run(opt_loop, loop, 4)
    assert opt_fused.state[fused[0]]["exp_avg"].storage_offset() > 0
    graphs = [c.graph for plan in opt_fused._plans.values() if isinstance(plan, _compile._Plan) for c in plan.chunks]
    assert graphs and all(isinstance(g, _compile._Graph) and g.direct is not None for g in graphs)
    assert all((g.kernel is not None) == (called == "the kernel") for g in graphs)
    for a, b in zip(fused, loop):
        torch.testing.assert_close(a, b)
