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

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Union

import torch

__all__ = ["warm_pass", "WarmPassReport", "memory_stats"]

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


def warm_pass(
    model: torch.nn.Module,
    batch_rows: int,
    max_len: int,
    vocab_size: int,
    loss_fn: Optional[Callable[[Any, torch.Tensor], torch.Tensor]] = None,
    autocast_dtype: Optional[torch.dtype] = None,
    device: Union[torch.device, str, None] = None,
    seed: int = 0,
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

    Returns:
        A :class:`WarmPassReport` with the allocator's counters before and after
        (``"unavailable"`` on the CPU).
    """
    if batch_rows < 1 or max_len < 1 or vocab_size < 1:
        raise ValueError("warm_pass: batch_rows, max_len and vocab_size must be >= 1")
    if isinstance(batch_rows, bool) or isinstance(max_len, bool) or isinstance(vocab_size, bool):
        raise TypeError("warm_pass: batch_rows, max_len and vocab_size are integers")
    batch_rows, max_len, vocab_size = int(batch_rows), int(max_len), int(vocab_size)
    if batch_rows < 1 or max_len < 2 or vocab_size < 1:
        raise ValueError("warm_pass: batch_rows and vocab_size must be >= 1, max_len >= 2")
    parameters = list(model.parameters())
    if device is None:
        device = parameters[0].device if parameters else torch.device("cpu")
    device = torch.device(device)
    loss_fn = loss_fn or _next_token_loss
    saved_grads = {p: (None if p.grad is None else p.grad.detach().clone()) for p in parameters}
    saved_buffers = [(b, b.detach().clone()) for b in model.buffers()]
    # Each module's own mode: model.train(was) would undo a frozen (eval) submodule.
    saved_modes = [(m, m.training) for m in model.modules()]
    before = memory_stats(device)
    started = time.perf_counter()
    generator = torch.Generator(device="cpu").manual_seed(seed)
    ids = torch.randint(0, vocab_size, (batch_rows, max_len), generator=generator).to(device)
    rng_devices = [device] if device.type == "cuda" else []
    value = float("nan")
    try:
        with torch.random.fork_rng(devices=rng_devices):
            model.train()
            if autocast_dtype is not None:
                with torch.autocast(device_type=device.type, dtype=autocast_dtype):
                    loss = loss_fn(model(ids), ids)
            else:
                loss = loss_fn(model(ids), ids)
            loss.backward()
            value = float(loss.detach())
            del loss
    finally:
        # Whatever happened, the model is as it was.
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
