"""seqwarm.torch.warm_pass: training afterwards is bit-identical to training without it."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch

import seqwarm.torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "python"))
from train_gpt import GPT  # noqa: E402


def make(seed: int = 0) -> "tuple[GPT, torch.optim.Optimizer]":
    torch.manual_seed(seed)
    model = GPT(vocab_size=97, max_len=64, width=32, layers=2, heads=4, dropout=0.1)
    return model, torch.optim.AdamW(model.parameters(), lr=1e-3)


def step(model: GPT, optimizer: torch.optim.Optimizer, ids: torch.Tensor) -> float:
    logits = model(ids)
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 97), ids[:, 1:].reshape(-1))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def snapshot(model: GPT, optimizer: torch.optim.Optimizer) -> "tuple[dict, dict]":
    return copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())


def same(a: object, b: object) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def test_the_warm_pass_leaves_parameters_gradients_and_optimizer_untouched() -> None:
    model, optimizer = make()
    ids = torch.randint(0, 97, (4, 16))
    step(model, optimizer, ids)  # an optimizer with state, gradients present
    before = snapshot(model, optimizer)
    grads = [p.grad.clone() for p in model.parameters()]
    report = seqwarm.torch.warm_pass(model, batch_rows=8, max_len=64, vocab_size=97)
    assert same(snapshot(model, optimizer), before)
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads))
    assert (report.rows, report.seq_len) == (8, 64)
    assert report.before == "unavailable" and report.after == "unavailable"  # CPU
    assert report.loss == report.loss  # a real loss, not NaN


def test_gradients_that_were_none_are_none_again() -> None:
    model, _ = make()
    seqwarm.torch.warm_pass(model, batch_rows=2, max_len=32, vocab_size=97)
    assert all(p.grad is None for p in model.parameters())


def test_the_next_steps_equal_those_of_a_model_that_never_ran_it() -> None:
    warmed, warmed_opt = make()
    plain, plain_opt = make()
    torch.manual_seed(123)
    seqwarm.torch.warm_pass(warmed, batch_rows=8, max_len=64, vocab_size=97, seed=5)
    state = torch.get_rng_state()
    ids = torch.randint(0, 97, (4, 24))
    losses_warmed = [step(warmed, warmed_opt, ids) for _ in range(3)]
    torch.manual_seed(123)
    assert torch.equal(torch.get_rng_state(), state), "the warm pass moved the global generator"
    ids = torch.randint(0, 97, (4, 24))
    losses_plain = [step(plain, plain_opt, ids) for _ in range(3)]
    assert losses_warmed == losses_plain
    assert same(snapshot(warmed, warmed_opt), snapshot(plain, plain_opt))


def test_buffers_such_as_batch_norm_statistics_are_restored() -> None:
    model = torch.nn.Sequential(torch.nn.Embedding(11, 8), torch.nn.BatchNorm1d(5), torch.nn.Linear(8, 11))
    before = copy.deepcopy(model.state_dict())
    seqwarm.torch.warm_pass(model, batch_rows=4, max_len=5, vocab_size=11)
    assert same(model.state_dict(), before)


def test_a_model_without_logits_needs_a_loss_function() -> None:
    class Odd(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.e = torch.nn.Embedding(7, 3)

        def forward(self, ids: torch.Tensor) -> dict:
            return {"hidden": self.e(ids)}

    with pytest.raises(TypeError, match="loss_fn"):
        seqwarm.torch.warm_pass(Odd(), 2, 4, 7)
    report = seqwarm.torch.warm_pass(Odd(), 2, 4, 7, loss_fn=lambda out, ids: out["hidden"].square().mean())
    assert report.loss >= 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_a_gpu_the_allocator_reserves_the_largest_shape() -> None:
    model, _ = make()
    model = model.cuda()
    report = seqwarm.torch.warm_pass(model, batch_rows=8, max_len=64, vocab_size=97)
    assert isinstance(report.after, dict) and report.after["reserved_bytes.all.current"] > 0


def test_frozen_submodules_stay_frozen_and_a_failing_pass_changes_nothing() -> None:
    model = torch.nn.Sequential(torch.nn.Embedding(11, 8), torch.nn.BatchNorm1d(5), torch.nn.Linear(8, 11))
    model[1].eval()  # a frozen batch norm in a model in training mode
    seqwarm.torch.warm_pass(model, batch_rows=4, max_len=5, vocab_size=11)
    assert model.training and not model[1].training
    before = copy.deepcopy(model.state_dict())

    def failing(output: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")

    model.train()
    with pytest.raises(RuntimeError, match="boom"):
        seqwarm.torch.warm_pass(model, batch_rows=4, max_len=5, vocab_size=11, loss_fn=failing)
    assert same(model.state_dict(), before)
