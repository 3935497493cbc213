"""optlib's optimizers under DDP, ZeRO-1 and FSDP2 on 2 CPU processes (gloo on 127.0.0.1).

Starting processes costs seconds, so each wrapper starts them twice in all: once for the
uninterrupted runs of every optimizer (each saving a checkpoint at step 10) and once, fresh,
for the runs that resume from those checkpoints. The tests then read the results per
(wrapper, optimizer, path), so a failure names all three.
"""

import re

import pytest
import torch

import optlib
from optlib.data import load_digits
from optlib.distributed import (
    DEMO_HYPERPARAMETERS,
    run_on_processes,
    train_distributed,
    train_runs,
)

pytestmark = [
    pytest.mark.skipif(not torch.distributed.is_available(), reason="this torch has no torch.distributed"),
    # torch.distributed.optim scripts its functional optimizers with torch.jit on import: torch's, not ours.
    pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning"),
]

WRAPPERS = ("ddp", "zero1", "fsdp")
OPTIMIZERS = ("SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "NAdam", "NesterovAdamW")
# The single-tensor, the torch._foreach_* and the compiled update (RMSprop has none, as in torch).
PATHS = {"loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}
CASES = [(name, path) for name in OPTIMIZERS for path in PATHS if not (name == "RMSprop" and path == "fused")]
CASE_IDS = [f"{name}-{path}" for name, path in CASES]
WORLD_SIZE, STEPS, SAVE_AT = 2, 20, 10


def _run(strategy: str, name: str, path: str, **extra) -> dict:
    hyperparameters = {**DEMO_HYPERPARAMETERS[name], **PATHS[path]}
    return dict(
        strategy=strategy, optimizer=name, steps=STEPS, hyperparameters=hyperparameters, return_parameters=True, **extra
    )


@pytest.fixture(scope="module")
def digits():
    splits = load_digits()
    return splits.X_train, splits.y_train


@pytest.fixture(scope="module")
def one_process(digits):
    """Each optimizer on one process and the whole global batch: the trajectory to reproduce."""
    return {case: train_distributed(**_run("single", *case), data=digits) for case in CASES}


@pytest.fixture(scope="module")
def spawned(digits, tmp_path_factory):
    """spawned(wrapper, resumed) -> {case: [result of rank 0, result of rank 1]}, run once per wrapper."""
    cache = {}

    def get(wrapper: str, resumed: bool = False) -> dict:
        key = (wrapper, resumed)
        if key not in cache:
            if resumed:
                get(wrapper)  # the checkpoints come from the uninterrupted runs
            checkpoints = tmp_path_factory.getbasetemp() / f"checkpoints_{wrapper}"
            runs = [
                _run(
                    wrapper,
                    name,
                    path,
                    checkpoint_dir=str(checkpoints / f"{name}_{path}"),
                    **({"resume": True} if resumed else {"save_at": SAVE_AT}),
                )
                for name, path in CASES
            ]
            per_rank = run_on_processes(train_runs, WORLD_SIZE, args=(runs, digits), timeout_s=120)
            cache[key] = {case: [per_rank[rank][i] for rank in range(WORLD_SIZE)] for i, case in enumerate(CASES)}
        return cache[key]

    return get


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("wrapper", WRAPPERS)
def test_two_processes_follow_one_process(spawned, one_process, wrapper, case):
    reference = one_process[case]
    for result in spawned(wrapper)[case]:
        assert result["world_size"] == WORLD_SIZE and result["start_step"] == 0
        assert result["parameters"].keys() == reference["parameters"].keys()
        for name, value in result["parameters"].items():
            torch.testing.assert_close(
                value,
                reference["parameters"][name],
                msg=lambda m, name=name: f"{wrapper}, {case}, parameter {name} after {STEPS} steps: {m}",
            )
        torch.testing.assert_close(result["losses"], reference["losses"], rtol=1e-5, atol=1e-6)
    # The reference moves: a test that compared parameters which never left their start would pass vacuously.
    assert reference["losses"][-1] < 0.95 * reference["losses"][0]
    rank0, rank1 = spawned(wrapper)[case]
    for name in rank0["parameters"]:
        assert torch.equal(rank0["parameters"][name], rank1["parameters"][name]), f"ranks disagree on {name}"


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("wrapper", WRAPPERS)
def test_sharded_wrappers_hold_half_the_optimizer_state(spawned, one_process, wrapper, case):
    whole_state = one_process[case]["optimizer_state_bytes"]
    whole_model = one_process[case]["parameter_bytes"]
    results = spawned(wrapper)[case]
    state = [r["optimizer_state_bytes"] for r in results]
    params = [r["parameter_bytes"] for r in results]
    assert whole_state >= whole_model  # every optimizer here keeps at least one buffer per parameter
    if wrapper == "ddp":
        assert state == [whole_state] * WORLD_SIZE and params == [whole_model] * WORLD_SIZE
        return
    # Nothing lost: the shards cover the state (FSDP repeats the scalar step counters on every rank).
    assert sum(state) >= whole_state
    for share in state:
        assert abs(share / whole_state - 1 / WORLD_SIZE) < 0.1, f"{wrapper} rank holds {share} of {whole_state} B"
    if wrapper == "zero1":
        assert params == [whole_model] * WORLD_SIZE  # ZeRO-1 shards the optimizer state only
    else:
        assert sum(params) == whole_model and all(abs(p / whole_model - 0.5) < 0.05 for p in params)
        assert [r["gradient_bytes"] for r in results] == params


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("wrapper", WRAPPERS)
def test_checkpoint_resumes_bit_identically_in_fresh_processes(spawned, wrapper, case):
    uninterrupted = spawned(wrapper)[case]
    resumed = spawned(wrapper, resumed=True)[case]
    for before, after in zip(uninterrupted, resumed):
        assert after["start_step"] == SAVE_AT and len(after["losses"]) == STEPS - SAVE_AT
        assert after["losses"] == before["losses"][SAVE_AT:]
        for name, value in after["parameters"].items():
            assert torch.equal(value, before["parameters"][name]), f"{wrapper}, {case}: {name} differs after resuming"
        assert after["optimizer_state_bytes"] == before["optimizer_state_bytes"]


def test_launcher_prints_what_each_rank_holds(capsys):
    from optlib.distributed import main

    results = main(["--nproc", "2", "--strategy", "zero1", "--optimizer", "NesterovAdamW", "--steps", "3"])
    printed = capsys.readouterr().out
    assert [r["rank"] for r in results] == [0, 1] and all(r["strategy"] == "zero1" for r in results)
    assert results[0]["final_loss"] == results[1]["final_loss"] < results[0]["losses"][0]
    for r in results:
        kib = [f"{r[key] / 1024:,.1f} KiB" for key in ("parameter_bytes", "gradient_bytes", "optimizer_state_bytes")]
        row = rf"^\s*{r['rank']}\s+{kib[0]}\s+{kib[1]}\s+{kib[2]}\s+{r['final_loss']:.4f}$"
        assert re.search(row, printed, flags=re.MULTILINE), f"no row {row!r} in:\n{printed}"
    assert "NesterovAdamW under zero1 on 2 processes, steps 1-3" in printed


def _local_worker():
    def worker(rank, world_size):
        return rank

    return worker


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: run_on_processes(_local_worker(), 2), ValueError, "Invalid worker: .*top level"),
        (lambda: run_on_processes(train_runs, 0), ValueError, r"Invalid world_size: 0; .*\[1, 64\]"),
        (lambda: train_distributed("zero2"), ValueError, "Invalid strategy: 'zero2'"),
        (lambda: train_distributed("single", "Adamax"), ValueError, "Invalid optimizer: 'Adamax'"),
        (lambda: train_distributed("single", steps=0), ValueError, "Invalid steps: 0"),
        (lambda: train_distributed("single", steps=5, save_at=6, checkpoint_dir="x"), ValueError, "Invalid save_at: 6"),
        (lambda: train_distributed("single", resume=True), ValueError, "Invalid checkpoint_dir: None"),
        (lambda: train_distributed("fsdp"), RuntimeError, "needs a process group"),
    ],
    ids=["local worker", "world_size", "strategy", "optimizer", "steps", "save_at", "checkpoint_dir", "no group"],
)
def test_bad_input_is_refused_with_the_argument_named(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_sharding_demo_refuses_the_single_strategy():
    from optlib.distributed import sharding_demo

    with pytest.raises(
        ValueError, match=r"Invalid strategy: 'single'; strategy must be one of \['ddp', 'zero1', 'fsdp'\]"
    ):
        sharding_demo("single")


@pytest.fixture
def one_rank_mesh(tmp_path):
    """A process group of this process alone (gloo, on the loopback interface) and its device mesh."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    from optlib.distributed import _keep_gloo_on_loopback

    _keep_gloo_on_loopback()
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        yield init_device_mesh("cpu", (1,))
    finally:
        dist.destroy_process_group()


def test_fused_step_on_dtensors_keeps_its_plan_until_a_shard_is_replaced(one_rank_mesh, monkeypatch):
    """Under FSDP2 the parameters, their state and their gradients are DTensors, and each
    gradient's shard is a view into the reduce-scatter's one flat buffer. The fused path
    updates the local shards and must keep what it prepared (the plan, the direct calls)
    from step to step, as for plain tensors, rather than prepare it all again each step; but
    not past the moment FSDP2 gives a parameter a new local shard (when the model is moved
    or loaded with assign=True): then the step must update the new shard."""
    tensor_api = pytest.importorskip("torch.distributed.tensor", reason="this torch has no public DTensor (< 2.4)")
    DTensor, Shard, distribute_tensor = tensor_api.DTensor, tensor_api.Shard, tensor_api.distribute_tensor

    from optlib.optim import _compile

    built = []
    init = _compile._Plan.__init__
    monkeypatch.setattr(_compile._Plan, "__init__", lambda self, *a, **k: (built.append(1), init(self, *a, **k))[1])
    torch.manual_seed(0)
    start = [torch.randn(s) for s in [(12, 5), (12,), (8, 3)]]
    sharded = [torch.nn.Parameter(distribute_tensor(t.clone(), one_rank_mesh, [Shard(0)])) for t in start]
    loop = [torch.nn.Parameter(t.clone()) for t in start]
    opt_sharded = optlib.AdamW(sharded, lr=0.01, weight_decay=0.1, fused=True)
    opt_loop = optlib.AdamW(loop, lr=0.01, weight_decay=0.1, foreach=False)

    def step_both(step):
        grads = [torch.sin(3 * p.detach() + step) for p in loop]
        flat = torch.cat([torch.zeros(1), *(g.flatten() for g in grads)])  # one buffer, as FSDP2's
        offset = 1
        for p, g in zip(sharded, grads):
            shard = flat[offset : offset + g.numel()].view(g.shape)
            p.grad = DTensor.from_local(shard, one_rank_mesh, [Shard(0)], run_check=False)
            offset += g.numel()
        for p, g in zip(loop, grads):
            p.grad = g
        opt_sharded.step()
        opt_loop.step()

    for step in range(4):
        step_both(step)
    assert len(built) == 1, "the fused path prepared the same DTensors anew"
    plans = [plan for plan in opt_sharded._plans.values() if isinstance(plan, _compile._Plan)]
    assert all(isinstance(chunk.graph, _compile._Graph) for plan in plans for chunk in plan.chunks)
    sharded[0]._local_tensor = sharded[0]._local_tensor.clone()  # what FSDP2's reset_sharded_param does
    step_both(4)
    assert len(built) == 2, "a replaced shard did not make the fused path prepare again"
    for a, b in zip(sharded, loop):
        torch.testing.assert_close(a.detach().full_tensor(), b.detach())
