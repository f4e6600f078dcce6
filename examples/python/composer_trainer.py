"""Composer's ``Trainer`` fed by ``seqwarm.Loader``, with the sequence-length schedule in the
data loader instead of Composer's ``SeqLengthWarmup`` algorithm.

    pip install mosaicml==0.32.1 ./python    # Composer 0.32.1 wants torch < 2.7.1
    python examples/python/composer_trainer.py                   # demo corpus, tiny GPT, CPU
    python examples/python/composer_trainer.py --shards data/ --steps 2000 --max-len 1024

``Schedule.composer`` is Composer's own schedule step for step (``min_seq_length``,
``max_seq_length``, ``step_size``, ``duration`` of ``max_duration``), and ``mode="truncate"``
or ``"reshape"`` its two cuts, so this trains on the batches ``SeqLengthWarmup`` would make,
cut in the loader's threads rather than on the training thread; ``mode="repack"`` drops no
token. The warm pass Composer's algorithm runs at the start is ``seqwarm.torch.warm_pass``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from typing import Any, List, Optional

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import seqwarm  # noqa: E402
import seqwarm.torch  # noqa: E402
from train_gpt import GPT, demo_corpus  # noqa: E402


#: Rows per microbatch: more than any batch has, so that Composer never splits one.
MICROBATCH_ROWS = 1 << 20


def main(argv: Optional[List[str]] = None) -> List[float]:
    from composer import Trainer
    from composer.core import DataSpec
    from composer.loggers import InMemoryLogger
    from composer.models import ComposerModel

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards")
    parser.add_argument("--vocab-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--min-len", type=int, default=16)
    parser.add_argument("--max-len", type=int, default=128)
    parser.add_argument("--batch-rows", type=int, default=8)
    parser.add_argument("--mode", default="truncate", help="truncate or reshape (Composer's cuts), or repack")
    args = parser.parse_args(argv)

    class ComposerGPT(ComposerModel):
        def __init__(self) -> None:
            super().__init__()
            self.gpt = GPT(args.vocab_size, args.max_len)

        def forward(self, batch: Any) -> torch.Tensor:
            return self.gpt(batch["input_ids"])

        def loss(self, outputs: torch.Tensor, batch: Any) -> torch.Tensor:
            ids = batch["input_ids"]
            return F.cross_entropy(outputs[:, :-1].reshape(-1, outputs.shape[-1]), ids[:, 1:].reshape(-1))

    # The demo corpus's documents have no EOS: the loader appends id 1. Shards from `seqwarm
    # preprocess` end each document with the EOS their manifest names: nothing to append.
    eos_id = 1 if args.shards is None else None
    scratch = tempfile.TemporaryDirectory(prefix="seqwarm-composer-")
    shards = args.shards
    if shards is None:
        shards = scratch.name
        demo_corpus(shards, args.vocab_size)

    schedule = seqwarm.Schedule.composer(min=args.min_len, max=args.max_len, step=8, duration=0.3, total=args.steps)
    loader = seqwarm.Loader(shards, schedule, mode=args.mode, batch_rows=args.batch_rows, eos_id=eos_id, dtype="i64", epochs=0, max_steps=args.steps)
    model = ComposerGPT()
    seqwarm.torch.warm_pass(model.gpt, args.batch_rows, args.max_len, args.vocab_size)
    # Whole batches: no sampler, no collation; Composer counts rows and tokens from them.
    data = DataSpec(
        DataLoader(loader, batch_size=None),
        get_num_samples_in_batch=lambda b: int(b["input_ids"].shape[0]),
        get_num_tokens_in_batch=lambda b: int(b["input_ids"].numel()),
    )
    logger = InMemoryLogger()
    trainer = Trainer(
        model=model,
        train_dataloader=data,
        max_duration=f"{args.steps}ba",
        # One microbatch per batch: the loader already sized it (reshape makes more, shorter
        # rows at short lengths, as Composer's own reshape does).
        device_train_microbatch_size=MICROBATCH_ROWS,
        optimizers=torch.optim.AdamW(model.parameters(), lr=3e-3),
        loggers=[logger],
        device="gpu" if torch.cuda.is_available() else "cpu",
        progress_bar=False,
        log_to_console=False,
    )
    with warnings.catch_warnings():
        # Composer warns that a batch is smaller than the microbatch size: that is the point.
        warnings.filterwarnings("ignore", message="Cannot split tensor")
        trainer.fit()
    losses = [float(v) for _, v in logger.data.get("loss/train/total", [])]
    print(f"{len(losses)} steps, loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    loader.close()
    scratch.cleanup()
    return losses


if __name__ == "__main__":
    main()
