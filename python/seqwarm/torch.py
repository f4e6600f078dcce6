"""PyTorch helpers: the warm pass that makes a growing sequence length cheap on a GPU.

Sequence Length Warmup grows the batch's shape during training. PyTorch's caching allocator
cuts its blocks for the shapes it sees first, so a run that starts short keeps adding device
memory as the length grows, and can fragment into out-of-memory or allocation retries under a
memory cap. One forward and backward pass at the *largest* shape first, with the gradients
zeroed and no optimizer or scheduler step, has the allocator reserve the max-size blocks up
front; every later, shorter step reuses them. ``docs/results.md`` shows what it buys on an
H200.
"""

from __future__ import annotations

import contextlib
import operator
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

import torch

__all__ = ["warm_pass", "WarmPassReport", "precompile", "PrecompileReport", "CompiledShape", "memory_stats"]

#: The allocator counters the report keeps (``torch.cuda.memory_stats`` names).
MEMORY_KEYS = (
    "reserved_bytes.all.current",
    "reserved_bytes.all.peak",
    "allocated_bytes.all.current",
    "allocated_bytes.all.peak",
    "segment.all.current",
    "num_alloc_retries",
    "num_device_alloc",
)


def memory_stats(device: Union[torch.device, str, None] = None) -> Union[Dict[str, int], str]:
    """The caching allocator's counters on ``device`` (``MEMORY_KEYS``), or ``"unavailable"``
    where the device has no caching allocator with statistics (the CPU)."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cuda" and torch.cuda.is_available():
        stats = torch.cuda.memory_stats(device)
        return {k: int(stats.get(k, 0)) for k in MEMORY_KEYS}
    accelerator = getattr(torch, "accelerator", None)
    if device.type != "cpu" and accelerator is not None and hasattr(accelerator, "memory_stats"):
        try:
            stats = accelerator.memory_stats(device)
        except (RuntimeError, TypeError):
            return "unavailable"
        return {k: int(stats.get(k, 0)) for k in MEMORY_KEYS}
    return "unavailable"


@dataclass
class WarmPassReport:
    """What one warm pass did: the device, its time, and the allocator before and after."""

    device: str
    rows: int
    seq_len: int
    seconds: float
    before: Union[Dict[str, int], str]
    after: Union[Dict[str, int], str]
    loss: float = field(default=float("nan"))

    @property
    def reserved_bytes(self) -> Optional[int]:
        """Bytes the allocator holds after the pass, if known."""
        return self.after.get("reserved_bytes.all.current") if isinstance(self.after, dict) else None


def _logits(output: Any) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(
        f"warm_pass: the model returned {type(output).__name__}; give loss_fn(output, input_ids) -> loss"
    )


def _next_token_loss(output: Any, input_ids: torch.Tensor) -> torch.Tensor:
    logits = _logits(output)
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(), input_ids[:, 1:].reshape(-1)
    )


@contextlib.contextmanager
def _leaves_model_untouched(model: torch.nn.Module, device: torch.device) -> Iterator[None]:
    """Runs the body with the model in training mode and puts everything back afterwards,
    whatever happened: parameters' gradients (``None`` again where they were ``None``),
    buffers (batch-norm statistics, say), each module's own mode, and the random-number
    generators (CPU and ``device``'s)."""
    parameters = list(model.parameters())
    saved_grads = {p: (None if p.grad is None else p.grad.detach().clone()) for p in parameters}
    saved_buffers = [(b, b.detach().clone()) for b in model.buffers()]
    # Each module's own mode: model.train(was) would undo a frozen (eval) submodule.
    saved_modes = [(m, m.training) for m in model.modules()]
    rng_devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=rng_devices):
            model.train()
            yield
    finally:
        with torch.no_grad():
            for p, grad in saved_grads.items():
                if grad is None:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.copy_(grad)
                else:
                    p.grad = grad
            for buffer, value_before in saved_buffers:
                buffer.copy_(value_before)
        for module, training in saved_modes:
            module.training = training


def _whole(caller: str, name: str, value: Any, least: int) -> int:
    """``value`` as an ``int`` (Python's or NumPy's integers; not a bool, float or string),
    at least ``least``."""
    if isinstance(value, bool):
        raise TypeError(f"{caller}: {name} is an integer, not a bool")
    try:
        whole = operator.index(value)
    except TypeError:
        raise TypeError(f"{caller}: {name} is an integer, not {type(value).__name__}") from None
    if whole < least:
        raise ValueError(f"{caller}: {name} must be >= {least}, not {whole}")
    return whole


def _model_device(model: torch.nn.Module, device: Union[torch.device, str, None]) -> torch.device:
    if device is None:
        parameter = next(iter(model.parameters()), None)
        return parameter.device if parameter is not None else torch.device("cpu")
    return torch.device(device)


def _forward_backward(
    model: torch.nn.Module,
    ids: torch.Tensor,
    loss_fn: Callable[[Any, torch.Tensor], torch.Tensor],
    forward: Optional[Callable[[torch.nn.Module, torch.Tensor], Any]],
    autocast_dtype: Optional[torch.dtype],
) -> float:
    """One forward and backward pass on ``ids``; the loss's value."""
    call = forward or (lambda m, x: m(x))
    if autocast_dtype is not None:
        with torch.autocast(device_type=ids.device.type, dtype=autocast_dtype):
            loss = loss_fn(call(model, ids), ids)
    else:
        loss = loss_fn(call(model, ids), ids)
    loss.backward()
    return float(loss.detach())


def warm_pass(
    model: torch.nn.Module,
    batch_rows: int,
    max_len: int,
    vocab_size: int,
    loss_fn: Optional[Callable[[Any, torch.Tensor], torch.Tensor]] = None,
    autocast_dtype: Optional[torch.dtype] = None,
    device: Union[torch.device, str, None] = None,
    seed: int = 0,
    forward: Optional[Callable[[torch.nn.Module, torch.Tensor], Any]] = None,
) -> WarmPassReport:
    """One forward and backward pass at the largest shape (``batch_rows`` x ``max_len``) on
    random token ids, then every gradient reset: no optimizer or scheduler step.

    Training afterwards is exactly as without it: parameters, buffers (batch-norm statistics,
    say), gradients and the random-number generators (CPU and the device's) are as they were,
    so the next step is bit-identical to one of a model that never ran the pass. Gradients
    that were ``None`` are ``None`` again (their memory goes back to the allocator's cache,
    which keeps it reserved).

    Args:
        model: called as ``model(input_ids)``; in training mode for the pass.
        batch_rows, max_len: the largest batch the run will see (``seqwarm.plan`` gives it).
        vocab_size: ids are drawn from ``[0, vocab_size)``.
        loss_fn: ``loss_fn(output, input_ids) -> loss``; by default next-token cross-entropy
            on the output's logits (a tensor, ``output.logits``, or ``output[0]``).
        autocast_dtype: run the forward under ``torch.autocast`` in this dtype (as training
            will), e.g. ``torch.bfloat16``.
        device: where the ids go; by default the model's parameters' device.
        seed: seed of the random ids (a private generator: the global one is untouched).
        forward: ``forward(model, input_ids) -> output``, for a model that takes more than
            the ids (``cu_seqlens``, say); by default ``model(input_ids)``.

    Returns:
        A :class:`WarmPassReport` with the allocator's counters before and after
        (``"unavailable"`` on the CPU).
    """
    batch_rows = _whole("warm_pass", "batch_rows", batch_rows, 1)
    max_len = _whole("warm_pass", "max_len", max_len, 2)
    vocab_size = _whole("warm_pass", "vocab_size", vocab_size, 1)
    device = _model_device(model, device)
    before = memory_stats(device)
    started = time.perf_counter()
    generator = torch.Generator(device="cpu").manual_seed(seed)
    ids = torch.randint(0, vocab_size, (batch_rows, max_len), generator=generator).to(device)
    with _leaves_model_untouched(model, device):
        value = _forward_backward(model, ids, loss_fn or _next_token_loss, forward, autocast_dtype)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    return WarmPassReport(
        device=str(device),
        rows=batch_rows,
        seq_len=max_len,
        seconds=seconds,
        before=before,
        after=memory_stats(device),
        loss=value,
    )


@dataclass(frozen=True)
class CompiledShape:
    """One shape run by :func:`precompile`, and how long its forward and backward took (for a
    compiled model, mostly compilation)."""

    rows: int
    seq_len: int
    seconds: float


@dataclass
class PrecompileReport:
    """What :func:`precompile` ran: every distinct shape, the largest first, with its time, and
    the allocator's counters before and after (``"unavailable"`` on the CPU)."""

    device: str
    shapes: List[CompiledShape]
    before: Union[Dict[str, int], str]
    after: Union[Dict[str, int], str]

    @property
    def seconds(self) -> float:
        """The time of every shape together."""
        return sum(s.seconds for s in self.shapes)


def _distinct_shapes(plan: Any) -> List[Tuple[int, int]]:
    """``(rows, seq_len)`` pairs from a :class:`seqwarm.Plan` (its ``shapes``) or any iterable
    of pairs, without repeats, the largest (most positions, then longest) first."""
    pairs = plan.shapes if hasattr(plan, "shapes") else plan
    shapes: List[Tuple[int, int]] = []
    for pair in pairs:
        rows, seq_len = pair
        rows = _whole("precompile", "a shape's rows", rows, 1)
        seq_len = _whole("precompile", "a shape's seq_len", seq_len, 2)
        if (rows, seq_len) not in shapes:
            shapes.append((rows, seq_len))
    if not shapes:
        raise ValueError("precompile: the plan has no shapes")
    # The largest first: the allocator cuts its blocks for it (the warm pass), and every
    # later shape reuses them.
    return sorted(shapes, key=lambda s: (s[0] * s[1], s[1]), reverse=True)


def precompile(
    model: torch.nn.Module,
    plan: Any,
    vocab_size: int,
    loss_fn: Optional[Callable[[Any, torch.Tensor], torch.Tensor]] = None,
    autocast_dtype: Optional[torch.dtype] = None,
    device: Union[torch.device, str, None] = None,
    seed: int = 0,
    forward: Optional[Callable[[torch.nn.Module, torch.Tensor], Any]] = None,
) -> PrecompileReport:
    """One forward and backward pass at every distinct batch shape of ``plan``, the largest
    first, before training: a compiled model (``torch.compile``, CUDA graphs) compiles each
    shape here, up front, and the allocator sees the largest shape first (this *is* the warm
    pass, followed by the shorter shapes). No optimizer or scheduler step; the model, its
    gradients, buffers and the random-number generators are left exactly as they were
    (as :func:`warm_pass` does).

    With a schedule's shape policy (``Schedule.with_shapes``) the plan has at most a few
    shapes, so this compiles a few graphs and training compiles none; without one, a warmup
    has one shape per length (``docs/schedules.md``, "Shape policies").

    Args:
        model: the (compiled) model, called as ``model(input_ids)`` or through ``forward``.
        plan: a :class:`seqwarm.Plan` (made with the loader's mode and batch size, so that its
            rows are the batches' rows), or ``(rows, seq_len)`` pairs.
        vocab_size, loss_fn, autocast_dtype, device, seed, forward: as for :func:`warm_pass`.

    Returns:
        A :class:`PrecompileReport`: the shapes run, in order, with the time of each.
    """
    vocab_size = _whole("precompile", "vocab_size", vocab_size, 1)
    shapes = _distinct_shapes(plan)
    device = _model_device(model, device)
    loss_fn = loss_fn or _next_token_loss
    before = memory_stats(device)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    done: List[CompiledShape] = []
    with _leaves_model_untouched(model, device):
        for rows, seq_len in shapes:
            ids = torch.randint(0, vocab_size, (rows, seq_len), generator=generator).to(device)
            started = time.perf_counter()
            _forward_backward(model, ids, loss_fn, forward, autocast_dtype)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            # The gradients add up over the shapes; they are put back (in the same tensors)
            # when the passes end.
            done.append(CompiledShape(rows=rows, seq_len=seq_len, seconds=time.perf_counter() - started))
    return PrecompileReport(device=str(device), shapes=done, before=before, after=memory_stats(device))
