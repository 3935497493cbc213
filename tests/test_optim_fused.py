"""optlib's fused path (one compiled kernel per 8 parameters) against its readable loop, and its contract.

* the same trajectory and state as the single-tensor loop, in float32 and float64,
  on the harness's awkward parameters (0-dim, transposed, strided with gaps, a
  parameter that never has a gradient, one that sometimes has none), with param groups;
* a state_dict saved mid-run resumes bit for bit, and loads into torch.optim's fused twin;
* a learning-rate scheduler changes a value, not the compiled graph;
* where compilation is impossible, fused=True says why and what to use instead;
* torch.optim's rules for fused (no foreach, no differentiable, no sparse gradients);
* what a step keeps for the next (its plan) follows what a training loop changes, holds
  no gradient, and falls back to Dynamo where the compiled graph cannot be called directly;
* later calls go straight to Inductor's graph and still count the versions of what they
  write, or go through AOTAutograd's wrappers where that graph cannot be matched;
* a model of other sizes compiles no new graph.

Compilation dominates the run time, so the cases are few and share compiled kernels.

The fused path is compared with optlib's loop, which test_optim_*.py compares with
torch.optim's loop, not with torch.optim's fused kernels directly: in torch 2.13
those depart from torch's own loop on the harness's strided parameter (a view with
gaps: up to 5e3 apart for SGD, 2 for AdamW after 100 steps), where optlib's fused
path runs its update uncompiled and matches.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import weakref

import pytest
import torch
from optim_harness import (
    DTYPES,
    assert_foreach_matches_single,
    assert_params_close,
    assert_state_dict_roundtrip,
    run,
)

import optlib
from optlib.optim import _compile
from optlib.optim._compile import compile_seconds

# (optimizer, options that exercise each branch of its kernel)
CASES = [
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.8, dampening=0.3, maximize=True)),
    ("SGD", dict(lr=0.05)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, weight_decay=0.01, initial_accumulator_value=0.1)),
    ("Adam", dict(lr=0.01, weight_decay=0.01, amsgrad=True)),
    ("AdamW", dict(lr=0.01, maximize=True)),
    ("NAdam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
    ("NAdam", dict(lr=0.01, weight_decay=0.01)),
    ("NesterovAdamW", dict(lr=0.01, betas=(0.0, 0.99))),
    ("NesterovAdamW", dict(lr=0.01, nesterov=False, weight_decay=0.0)),
]
IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for name, kw in CASES]


@DTYPES
@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_fused_matches_single_tensor(name, kwargs, dtype):
    assert_foreach_matches_single(getattr(optlib, name), kwargs, steps=30, dtype=dtype, path="fused")


@pytest.mark.parametrize("name,kwargs", [CASES[0], CASES[4], CASES[8]], ids=[IDS[0], IDS[4], IDS[8]])
def test_fused_matches_single_tensor_with_two_threads(name, kwargs):
    """The suite runs with one thread; the kernels must also agree where OpenMP has two.

    With two threads and a one-element parameter among larger ones, Inductor's loop once
    applied that element's update on each thread.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert_foreach_matches_single(getattr(optlib, name), kwargs, steps=20, path="fused")
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("name", ["SGD", "Adagrad", "Adam", "AdamW", "NAdam", "NesterovAdamW"])
def test_fused_matches_single_tensor_with_param_groups(name):
    kwargs = dict(CASES[[n for n, _ in CASES].index(name)][1])
    lr = kwargs.pop("lr")
    groups = [dict(lr=lr), dict(lr=lr / 3)]
    assert_foreach_matches_single(getattr(optlib, name), kwargs | {"lr": lr}, steps=20, groups=groups, path="fused")


# The first case of each optimizer: every fused path saves and resumes.
FIRST_OF_EACH = [next(i for i, (n, _) in enumerate(CASES) if n == name) for name in dict(CASES)]


@pytest.mark.parametrize("name,kwargs", [CASES[i] for i in FIRST_OF_EACH], ids=[IDS[i] for i in FIRST_OF_EACH])
def test_fused_state_dict_roundtrip(name, kwargs):
    assert_state_dict_roundtrip(getattr(optlib, name), {**kwargs, "fused": True}, steps=10, via_bytes=True)


# Where the suite runs on a CPU this is skipped; on a GPU machine it is the only check of the
# Triton kernels Inductor writes for the fused path.
FUSED_DEVICE = "cuda"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the fused path's CUDA kernels need a GPU")
@pytest.mark.parametrize("name,kwargs", [CASES[i] for i in FIRST_OF_EACH], ids=[IDS[i] for i in FIRST_OF_EACH])
def test_fused_on_cuda_matches_the_loop_on_the_cpu(name, kwargs):
    cls = getattr(optlib, name)
    loop, _, _ = run(cls, {**kwargs, "foreach": False}, 20)
    fused, _, _ = run(cls, {**kwargs, "fused": True}, 20, device=FUSED_DEVICE)
    assert all(p.device.type == FUSED_DEVICE for p in fused)
    assert_params_close([p.cpu() for p in fused], loop, f"{name} fused on {FUSED_DEVICE} vs the loop on the CPU")


def test_a_scheduler_changes_lr_without_recompiling():
    def schedule(opt):
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 / (1 + t))

    kwargs = dict(lr=0.01, weight_decay=0.01, fused=True)
    params, opt, _ = run(optlib.NesterovAdamW, kwargs, steps=3, scheduler=schedule)  # compiles what it needs
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    variants = compile_seconds()
    lr_before = opt.param_groups[0]["lr"]
    run(optlib.NesterovAdamW, kwargs, steps=20, params=params, optimizer=opt, scheduler=schedule, first_step=3)
    assert opt.param_groups[0]["lr"] != lr_before
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs, "a new lr compiled a new graph"
    assert compile_seconds().keys() == variants.keys()


def test_a_new_lr_is_written_where_the_graphs_read_it(monkeypatch):
    """A scheduled lr changes the value in the tensor the graphs already take, so nothing of
    what a step prepared (its plan, the graphs' arguments) is prepared again, and the
    trajectory is still the loop's."""
    torch.manual_seed(0)
    fused = [torch.nn.Parameter(torch.randn(s)) for s in [(10, 20), (7,), (3, 3)]]
    loop = [torch.nn.Parameter(p.detach().clone()) for p in fused]
    opt_fused = optlib.NesterovAdamW(fused, lr=0.01, weight_decay=0.1, fused=True)
    opt_loop = optlib.NesterovAdamW(loop, lr=0.01, weight_decay=0.1, foreach=False)
    schedules = [torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 / (1 + t)) for opt in (opt_fused, opt_loop)]
    pairs = ((fused, opt_fused), (loop, opt_loop))
    prepared, prepare = [], _compile._Graph.arguments
    for step in range(6):
        if step == 2:  # the graphs and their arguments exist from the second step on
            monkeypatch.setattr(
                _compile._Graph, "arguments", lambda self, *a: (prepared.append(1), prepare(self, *a))[1]
            )
        _step_both(pairs, [torch.cos(p.detach() + step) for p in loop])
        for schedule in schedules:
            schedule.step()
    assert not prepared, "a new lr prepared the graphs' arguments again"
    for a, b in zip(fused, loop):
        torch.testing.assert_close(a, b)


def test_compile_time_is_recorded():
    run(optlib.AdamW, dict(lr=0.01, fused=True), steps=2)
    recorded = {k: v for k, v in compile_seconds().items() if k.startswith("AdamW:")}
    assert recorded and all(seconds > 0 for seconds in recorded.values())


def test_without_a_compiler_fused_says_why_and_what_instead():
    from torch._inductor import config

    params = [torch.nn.Parameter(torch.ones(3))]
    params[0].grad = torch.ones(3)
    opt = optlib.AdamW(params, fused=True)
    # config.patch, not monkeypatch: undoing a setattr on Inductor's config deletes the
    # option, and every later compilation in the process then fails.
    with config.patch({"cpp.cxx": ("no-such-c++-compiler",)}):
        with pytest.raises(RuntimeError, match=r"C\+\+ compiler.*foreach=True"):
            opt.step()
    assert config.cpp.cxx != ("no-such-c++-compiler",)


@pytest.mark.parametrize("name", ["SGD", "Adagrad", "Adam", "AdamW"])
@pytest.mark.parametrize(
    "flags,message", [(dict(foreach=True), "foreach"), (dict(differentiable=True), "differentiable")]
)
def test_fused_refuses_what_torch_refuses_with_its_error_type(name, flags, message):
    params = [torch.nn.Parameter(torch.ones(3))]
    with pytest.raises(RuntimeError):
        getattr(torch.optim, name)(params, fused=True, **flags)
    with pytest.raises(RuntimeError, match=message):
        getattr(optlib, name)(params, fused=True, **flags)


@pytest.mark.parametrize("name", ["SGD", "Adagrad"])
def test_fused_refuses_sparse_gradients(name):
    emb = torch.nn.Embedding(5, 2, sparse=True)
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse"):
        getattr(optlib, name)(emb.parameters(), lr=0.1, fused=True).step()


def test_rmsprop_has_no_fused_path_as_in_torch():
    params = [torch.nn.Parameter(torch.ones(3))]
    for cls in (torch.optim.RMSprop, optlib.RMSprop):
        with pytest.raises(TypeError):
            cls(params, fused=True)


def _step_both(pairs, grads):
    for ps, opt in pairs:
        for p, g in zip(ps, grads):
            p.grad = None if g is None else g.clone()
        opt.step()


def test_a_step_reuses_its_plan_and_follows_what_changes(monkeypatch):
    """The fused path keeps each step's preparation (flat views, chunks, graphs) for the next.

    It must follow what a training loop changes between steps: new gradient tensors
    (zero_grad sets them to None), a parameter without a gradient, a gradient laid out
    unlike its parameter, a learning rate, and state replaced by load_state_dict.
    """
    built = []
    init = _compile._Plan.__init__
    monkeypatch.setattr(_compile._Plan, "__init__", lambda self, *a, **k: (built.append(1), init(self, *a, **k))[1])
    torch.manual_seed(0)
    shapes = [(10, 20), (7,), (64,), (3, 3), ()]
    fused = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    loop = [torch.nn.Parameter(p.detach().clone()) for p in fused]
    opt_fused = optlib.NesterovAdamW(fused, lr=0.01, weight_decay=0.1, fused=True)
    opt_loop = optlib.NesterovAdamW(loop, lr=0.01, weight_decay=0.1, foreach=False)
    pairs = ((fused, opt_fused), (loop, opt_loop))

    def grads(step):
        return [torch.sin(p.detach() * 3 + step) for p in loop]

    for step in range(4):  # new gradient tensors every step
        _step_both(pairs, grads(step))
    assert len(built) == 1, "one plan serves every step over the same tensors"
    _step_both(pairs, [None, *grads(4)[1:]])  # the first parameter has no gradient this step
    _step_both(pairs, grads(5))
    transposed = [g.t().contiguous().t() if g.dim() == 2 else g for g in grads(6)]
    _step_both(pairs, transposed)  # a gradient whose layout differs from its parameter's
    for opt in (opt_fused, opt_loop):
        opt.param_groups[0]["lr"] = 0.003
    _step_both(pairs, grads(7))
    before = len(built)
    for opt in (opt_fused, opt_loop):
        opt.load_state_dict(copy.deepcopy(opt.state_dict()))  # new state tensors, same values
    _step_both(pairs, grads(8))
    assert len(built) == before + 1, "loading state builds a new plan"
    for a, b in zip(fused, loop):
        torch.testing.assert_close(a, b)
    for p, q in zip(fused, loop):
        torch.testing.assert_close(opt_fused.state[p]["exp_avg"], opt_loop.state[q]["exp_avg"])
    # The plan holds no gradient between steps: zero_grad frees them, as with torch.optim.
    freed = [weakref.ref(p.grad) for p in fused]
    opt_fused.zero_grad()
    gc.collect()
    assert all(ref() is None for ref in freed), "the fused path kept a gradient alive after the step"


def test_two_parameters_given_one_gradient_tensor_each_get_it():
    """The prepared arguments find each row's gradient by identity: a tensor that is the
    gradient of two parameters must not leave one of them the other's next gradient."""
    torch.manual_seed(0)
    fused = [torch.nn.Parameter(torch.randn(4, 3)) for _ in range(3)]
    loop = [torch.nn.Parameter(p.detach().clone()) for p in fused]
    opt_fused = optlib.NesterovAdamW(fused, lr=0.01, weight_decay=0.1, fused=True)
    opt_loop = optlib.NesterovAdamW(loop, lr=0.01, weight_decay=0.1, foreach=False)
    for step in range(5):
        shared = torch.full((4, 3), float(step + 1))
        for params, opt in ((fused, opt_fused), (loop, opt_loop)):
            if step < 2:
                params[0].grad = params[1].grad = shared  # one tensor, two parameters
            else:  # then each its own
                params[0].grad, params[1].grad = shared, -shared
            params[2].grad = torch.cos(params[2].detach() + step)
            before = params[0]._version
            opt.step()
            assert params[0]._version > before, "the step did not count the version of what it wrote"
    for a, b in zip(fused, loop):
        torch.testing.assert_close(a, b)


def test_each_param_group_keeps_its_plan(monkeypatch):
    """Groups with their own options (weight decay on weights, none on biases; an lr per layer)
    each keep a plan and its prepared arguments: they must not displace each other every step."""
    built, arguments = [], []
    init, prepare = _compile._Plan.__init__, _compile._Graph.arguments
    monkeypatch.setattr(_compile._Plan, "__init__", lambda self, *a, **k: (built.append(1), init(self, *a, **k))[1])
    monkeypatch.setattr(_compile._Graph, "arguments", lambda self, *a: (arguments.append(1), prepare(self, *a))[1])
    torch.manual_seed(0)
    groups = [
        {"params": [torch.nn.Parameter(torch.randn(10, 3)), torch.nn.Parameter(torch.randn(3))], "weight_decay": wd}
        for wd in [0.1, 0.0] * 15
    ]
    loop = [{**g, "params": [torch.nn.Parameter(p.detach().clone()) for p in g["params"]]} for g in groups]
    opt_fused = optlib.AdamW(groups, lr=0.01, fused=True)
    opt_loop = optlib.AdamW(loop, lr=0.01, foreach=False)
    for step in range(5):
        for gs, opt in ((groups, opt_fused), (loop, opt_loop)):
            for g in gs:
                for p in g["params"]:
                    p.grad = torch.sin(p.detach() + step)
            opt.step()
    assert len(built) == len(arguments) == len(groups), "a group's plan or arguments were prepared again"
    for g, h in zip(groups, loop):
        for a, b in zip(g["params"], h["params"]):
            torch.testing.assert_close(a, b)


def _graphs_of(opt) -> list:
    return [chunk.graph for plan in opt._plans.values() if isinstance(plan, _compile._Plan) for chunk in plan.chunks]


def test_later_calls_go_straight_to_inductors_graph_and_still_count_versions():
    """From its second call a graph runs as Inductor compiled it, past AOTAutograd's
    wrappers. What those wrappers did that a user can see is still done: each tensor the
    update writes counts one more version, so backward through a parameter saved before
    the step refuses, as on the loop path."""
    params = [torch.nn.Parameter(torch.randn(6, 5)), torch.nn.Parameter(torch.randn(9))]
    opt = optlib.NesterovAdamW(params, lr=0.01, weight_decay=0.1, fused=True)
    for _ in range(2):
        for p in params:
            p.grad = torch.ones_like(p)
        opt.step()
    graphs = _graphs_of(opt)
    assert graphs and all(isinstance(g, _compile._Graph) and g.direct is not None for g in graphs)
    # On the CPU, past Inductor's Python too: the C++ kernel itself, with the tensors as they are.
    assert all(g.kernel is not None for g in graphs)
    written = [t for p in params for t in (p, opt.state[p]["exp_avg"], opt.state[p]["exp_avg_sq"])]
    before = [t._version for t in written]
    grad_version = params[0].grad._version
    loss = (params[0] ** 2).sum()
    opt.step()
    assert [t._version for t in written] == [v + 1 for v in before]
    assert params[0].grad._version == grad_version  # read, not written
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


@pytest.mark.parametrize("unmatched", ["Dynamo's inputs", "Inductor's inputs", "the kernel's arguments"])
def test_where_a_graphs_inputs_cannot_be_matched_calls_take_the_slower_safe_way(monkeypatch, unmatched):
    """The direct calls rely on how Dynamo hands a backend its inputs, on how Inductor
    readies its graph, and on what its call passes the kernel; where a torch does any of
    these otherwise, the fused path must still be right, only slower: every call through
    Dynamo, through AOTAutograd's wrappers, or through Inductor's call."""
    from optlib.optim import adam

    if unmatched == "Dynamo's inputs":
        monkeypatch.setattr(_compile._KeepGraph, "_recipe", lambda self, gm, example_inputs: None)
    elif unmatched == "Inductor's inputs":
        monkeypatch.setattr(_compile, "_keep_inductor_graphs", lambda: contextlib.nullcontext([]))
    else:
        monkeypatch.setattr(_compile, "_bind_kernel", lambda *args: None)
    monkeypatch.setattr(adam._adam_fused_kernel, "_graphs", {})  # compile anew, with the patched backend
    torch.manual_seed(0)
    fused = [torch.nn.Parameter(torch.randn(s)) for s in [(6, 5), (9,), (4, 4)]]
    loop = [torch.nn.Parameter(p.detach().clone()) for p in fused]
    opt_fused = optlib.NesterovAdamW(fused, lr=0.01, weight_decay=0.1, fused=True)
    opt_loop = optlib.NesterovAdamW(loop, lr=0.01, weight_decay=0.1, foreach=False)
    for step in range(4):
        _step_both(((fused, opt_fused), (loop, opt_loop)), [torch.cos(p.detach() + step) for p in loop])
    graphs = _graphs_of(opt_fused)
    if unmatched == "Dynamo's inputs":
        assert graphs and all(isinstance(g, _compile._ThroughDynamo) for g in graphs)
    elif unmatched == "Inductor's inputs":
        assert graphs and all(isinstance(g, _compile._Graph) and g.direct is None for g in graphs)
    else:
        assert graphs and all(g.direct is not None and g.kernel is None for g in graphs)
    for a, b in zip(fused, loop):
        torch.testing.assert_close(a, b)


# Stand-ins for an Inductor call and its kernel: _bind_kernel finds the kernel among the
# globals of the call's function, so each call is defined in a namespace of its own.
_FAKE_CALLS = {
    "faithful": "def call(args):\n    p, g = args\n    args.clear()\n    cpp_fused_k(p, g, p.shape[0])",
    "also writes": "def call(args):\n    p, g = args\n    cpp_fused_k(p, g, p.shape[0])\n    g.mul_(2)",
    "calls twice": "def call(args):\n    p, g = args\n    cpp_fused_k(p, g, p.shape[0])\n    cpp_fused_k(p, g, p.shape[0])",
    "a constant size": "def call(args):\n    p, g = args\n    cpp_fused_k(p, g, 5)",
    "a temporary": "def call(args):\n    p, g = args\n    cpp_fused_k(p, g.clone(), p.shape[0])",
}


@pytest.mark.parametrize("behaviour", list(_FAKE_CALLS))
def test_a_kernel_is_called_directly_only_where_a_probe_proves_it_does_all_the_call_did(behaviour):
    """_bind_kernel learns from probes what Inductor's call passes its kernel; a call that does
    anything more, or passes something that is not one of its inputs or their sizes, must
    keep being called (a wrong binding would write the wrong memory)."""

    def cpp_fused_k(p, g, n):
        p[:n] -= 0.5 * g[:n]

    namespace = {"cpp_fused_k": cpp_fused_k}
    exec(_FAKE_CALLS[behaviour], namespace)
    row = (torch.zeros(4, 3), torch.ones(4, 3))
    binding = _compile._bind_kernel(namespace["call"], [0, 1], [row], {}, {})
    if behaviour == "faithful":
        assert binding == (cpp_fused_k, [0, 1, ~0])
    else:
        assert binding is None


def test_a_model_of_other_sizes_does_not_compile_again():
    """Chapter 14 says so: the kernel is compiled for any tensor sizes (and any number of them)."""

    def train(shapes):
        params = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
        opt = optlib.AdamW(params, lr=0.01, weight_decay=0.01, fused=True)
        for step in range(2):
            for p in params:
                p.grad = torch.sin(p.detach() + step)
            opt.step()

    train([(12, 7), (7,), (30,)])  # compiles what it needs
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    train([(5, 40), (40,), (3, 3, 3), (17,), (2, 50), (50,), (8, 8, 2), (64,), (9,), (11, 13)])
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs, "other sizes compiled a new graph"


@pytest.mark.parametrize("called", ["the kernel", "Inductor's call"])
def test_gradients_inside_one_flat_buffer_take_the_direct_path(monkeypatch, called):
    """Gradients that are views into one flat buffer (DDP's bucket views, FSDP2's reduce-scatter
    output) start inside their storage: Dynamo then makes each storage offset an input of
    the graph. The graph must still be called directly, the C++ kernel (with pointers) or
    Inductor's call (as on CUDA, with the offsets of each step's gradients: here they move
    between steps), and follow the loop."""
    from optlib.optim import adam

    monkeypatch.setattr(adam._adam_fused_kernel, "_graphs", {})  # compiled for these gradients
    if called == "Inductor's call":
        monkeypatch.setattr(_compile, "_bind_kernel", lambda *args: None)
    torch.manual_seed(0)
    shapes = [(6, 5), (9,), (4, 4)]
    fused = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    loop = [torch.nn.Parameter(p.detach().clone()) for p in fused]
    opt_fused = optlib.NesterovAdamW(fused, lr=0.01, weight_decay=0.1, fused=True)
    opt_loop = optlib.NesterovAdamW(loop, lr=0.01, weight_decay=0.1, foreach=False)
    for step in range(5):
        grads = [torch.cos(p.detach() + step) for p in loop]
        order = list(range(len(grads)))[:: 1 if step % 2 else -1]  # the offsets change from step to step
        flat = torch.cat([torch.zeros(3), *(grads[i].flatten() for i in order)])
        start, views = 3, {}
        for i in order:
            views[i] = flat[start : start + grads[i].numel()].view(grads[i].shape)
            start += grads[i].numel()
        for i, p in enumerate(fused):
            p.grad = views[i]
        assert all(p.grad.storage_offset() > 0 for p in fused)
        opt_fused.step()
        for p, g in zip(loop, grads):
            p.grad = g
        opt_loop.step()
    graphs = _graphs_of(opt_fused)
    assert graphs and all(isinstance(g, _compile._Graph) and g.direct is not None for g in graphs)
    assert all((g.kernel is not None) == (called == "the kernel") for g in graphs)
    assert any(isinstance(k, _compile._Offset) for g in graphs for k in g.recipe), "no storage offset was an input"
    for a, b in zip(fused, loop):
        torch.testing.assert_close(a, b)
