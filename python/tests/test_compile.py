"""Compile-friendly warmup: torch.compile recompiles once per new input shape; a schedule's shape
policy bounds the shapes, fixed-size cu_seqlens keeps packed batches to one shape per length,
and seqwarm.torch.precompile compiles every shape before training.

Compilations are counted with a counting backend (dynamo hands it one graph per compilation and
the graph runs eagerly), so the test measures what dynamo does without paying for inductor."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest

torch = pytest.importorskip("torch")
import torch._dynamo  # noqa: E402

import seqwarm  # noqa: E402
import seqwarm.torch  # noqa: E402
from conftest import write_corpus  # noqa: E402

VOCAB = 512
#: A warmup from 16 to 128 in steps of 8 over half of 48 steps: 15 lengths.
RAMP = dict(min=16, max=128, duration=0.5, total=48, step=8)


class Counter:
    """A torch.compile backend that counts the graphs dynamo compiles and runs them eagerly."""

    def __init__(self) -> None:
        self.graphs = 0

    def __call__(self, gm: "torch.fx.GraphModule", example_inputs: Any) -> Any:
        self.graphs += 1
        return gm.forward


class Tiny(torch.nn.Module):
    """Embedding, one causal self-attention, a head; `cu_seqlens`, when given, enters the graph
    (as a varlen kernel's argument would), so that its shape is part of what dynamo guards on."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(VOCAB, 32)
        self.qkv = torch.nn.Linear(32, 96)
        self.head = torch.nn.Linear(32, VOCAB)

    def forward(self, ids: "torch.Tensor", cu_seqlens: Any = None) -> "torch.Tensor":
        x = self.embed(ids)
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        x = x + torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        if cu_seqlens is not None:
            x = x + cu_seqlens[-1].to(x.dtype) * 0.0
        return self.head(x)


@pytest.fixture(autouse=True)
def fresh_dynamo() -> Iterator[None]:
    torch._dynamo.reset()
    # Dynamo gives up on a frame after `recompile_limit` shapes (8 by default) and runs it
    # eagerly from then on: raised so that the count without a policy is the real one (the
    # setting was `cache_size_limit` before PyTorch 2.6).
    name = "recompile_limit" if hasattr(torch._dynamo.config, "recompile_limit") else "cache_size_limit"
    with torch._dynamo.config.patch(**{name: 1000}):
        yield
    torch._dynamo.reset()


def compiled() -> Tuple[torch.nn.Module, Counter]:
    counter = Counter()
    return torch.compile(Tiny(), backend=counter, dynamic=False), counter


def train(model: torch.nn.Module, batches: List[Dict[str, Any]], use_cu_seqlens: bool = False) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for batch in batches:
        ids = batch["input_ids"].long() % VOCAB  # the corpus numbers its tokens 1, 2, 3, ...
        extra = {"cu_seqlens": batch["cu_seqlens"]} if use_cu_seqlens else {}
        logits = model(ids, **extra)
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), ids[:, 1:].reshape(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def synthetic(schedule: seqwarm.Schedule, rows: int = 2) -> List[Dict[str, Any]]:
    generator = torch.Generator().manual_seed(1)
    plan = seqwarm.plan(schedule, batch_rows=rows)
    return [
        {"input_ids": torch.randint(0, VOCAB, (rows, plan.seq_len_at(step)), generator=generator)}
        for step in range(schedule.total or 0)
    ]


def test_without_a_policy_every_length_compiles_once() -> None:
    schedule = seqwarm.Schedule.linear(**RAMP)
    lengths = [p.seq_len for p in seqwarm.plan(schedule, batch_rows=2)]
    assert len(lengths) == 15
    model, counter = compiled()
    train(model, synthetic(schedule))
    assert counter.graphs == len(lengths)


@pytest.mark.parametrize("shapes, k", [(4, 4), ("powers_of_two", 4), ([32, 64, 128], 3)])
def test_a_policy_bounds_compilations_and_precompile_leaves_none_for_training(shapes: Any, k: int) -> None:
    schedule = seqwarm.Schedule.linear(**RAMP, shapes=shapes)
    plan = seqwarm.plan(schedule, batch_rows=2)
    assert len(plan.shapes) == k
    assert schedule.allowed_lengths is not None and len(schedule.allowed_lengths) == k
    model, counter = compiled()
    report = seqwarm.torch.precompile(model, plan, vocab_size=VOCAB)
    # The largest shape first (the warm pass), then the rest; one compilation each.
    assert [(s.rows, s.seq_len) for s in report.shapes][0] == (2, 128)
    assert sorted(s.seq_len for s in report.shapes) == sorted(p.seq_len for p in plan)
    assert counter.graphs == k
    # No gradient left behind, no parameter moved.
    assert all(p.grad is None for p in model.parameters())
    train(model, synthetic(schedule))
    assert counter.graphs == k, "training compiled a shape the pre-compile pass missed"


def test_precompile_changes_nothing_training_sees() -> None:
    schedule = seqwarm.Schedule.linear(**RAMP, shapes=4)
    batches = synthetic(schedule)
    plain = Tiny()
    warmed = Tiny()
    # Gradients from before (say, of an accumulation in progress) come back in their tensors.
    for model in (plain, warmed):
        model(batches[0]["input_ids"]).sum().backward()
    held = [p.grad for p in warmed.parameters()]
    values = [g.clone() for g in held]
    rng = torch.get_rng_state()
    report = seqwarm.torch.precompile(warmed, seqwarm.plan(schedule, batch_rows=2), vocab_size=VOCAB)
    assert len(report.shapes) == 4 and report.seconds > 0
    assert torch.equal(torch.get_rng_state(), rng)
    for p, tensor, value in zip(warmed.parameters(), held, values):
        assert p.grad is tensor and torch.equal(p.grad, value)
    train(plain, batches)
    train(warmed, batches)
    for a, b in zip(plain.parameters(), warmed.parameters()):
        assert torch.equal(a, b)


def test_precompile_checks_its_arguments() -> None:
    with pytest.raises(TypeError, match="vocab_size is an integer"):
        seqwarm.torch.precompile(Tiny(), [(2, 16)], vocab_size="512")
    with pytest.raises(ValueError, match="seq_len must be >= 2"):
        seqwarm.torch.precompile(Tiny(), [(2, 1)], vocab_size=VOCAB)
    with pytest.raises(ValueError, match="no shapes"):
        seqwarm.torch.precompile(Tiny(), [], vocab_size=VOCAB)


def loader_batches(directory: str, schedule: seqwarm.Schedule, pad: bool) -> List[Dict[str, Any]]:
    loader = seqwarm.Loader(
        directory,
        schedule,
        mode="pack-greedy",
        batch_rows=2,
        max_steps=schedule.total,
        max_segments_per_row=4 if pad else None,
        pad_cu_seqlens=pad,
        threads=0,
    )
    with loader:
        batches = list(loader)
    # The attributes survive pickling (a DataLoader worker sends batches pickled).
    again = pickle.loads(pickle.dumps(batches[-1]))
    assert (again.max_seqlen, again.cu_seqlens_count) == (batches[-1].max_seqlen, batches[-1].cu_seqlens_count)
    return [dict(batch, max_seqlen=batch.max_seqlen, count=batch.cu_seqlens_count) for batch in batches]


def test_packed_batches_with_fixed_cu_seqlens_compile_once_per_length(tmp_path: Path) -> None:
    write_corpus(tmp_path, files=1, docs_per_file=200)
    schedule = seqwarm.Schedule.linear(**RAMP, shapes=4)
    padded = loader_batches(str(tmp_path), schedule, pad=True)
    assert len(padded) == 48
    for batch in padded:
        rows, seq_len = batch["input_ids"].shape
        cu = batch["cu_seqlens"]
        # rows x min(max_segments + 1, len) + 1 entries, the real ones first, then the
        # sentinel: the total, i.e. sequences of length zero.
        assert cu.shape == (rows * min(4 + 1, seq_len) + 1,)
        assert cu.dtype == torch.int32
        count = batch["count"]
        assert cu[count - 1] == rows * seq_len
        assert bool((cu[count - 1 :] == rows * seq_len).all())
        assert bool((cu[1:count] > cu[: count - 1]).all())
        assert batch["max_seqlen"] == int((cu[1:count] - cu[: count - 1]).max())
        assert int(batch["segment_ids"].max()) <= 4
    model, counter = compiled()
    plan = seqwarm.plan(schedule, mode="pack-greedy", batch_rows=2)
    seqwarm.torch.precompile(
        model,
        plan,
        vocab_size=VOCAB,
        forward=lambda m, ids: m(ids, cu_seqlens=torch.zeros(ids.shape[0] * min(5, ids.shape[1]) + 1, dtype=torch.int32)),
    )
    assert counter.graphs == 4
    train(model, padded, use_cu_seqlens=True)
    assert counter.graphs == 4

    with pytest.raises(seqwarm.ConfigError, match="only the pack modes"):
        seqwarm.Loader(str(tmp_path), schedule, mode="repack", pad_cu_seqlens=True)

    # Exact cu_seqlens change size with the number of documents in a batch: a compilation for
    # every (length, cu_seqlens size) pair seen, not one per length.
    exact = loader_batches(str(tmp_path), schedule, pad=False)
    pairs = {(tuple(b["input_ids"].shape), tuple(b["cu_seqlens"].shape)) for b in exact}
    assert len(pairs) > 4
    model, counter = compiled()
    train(model, exact, use_cu_seqlens=True)
    assert counter.graphs == len(pairs)
