"""A Hugging Face ``Trainer`` fed by ``seqwarm.Loader``: the warmup schedule lives in the data
loader, so the model and the Trainer need nothing special.

    python examples/python/hf_trainer.py                          # demo corpus, tiny GPT-2, CPU
    python examples/python/hf_trainer.py --shards data/ --steps 2000 --max-len 1024

The loader yields whole batches (``DataLoader(loader, batch_size=None)``) of ``int64`` ids that
share its memory; ``labels`` are the ids (the model shifts them). The learning-rate schedule is
the Trainer's own, in steps. ``docs/python.md`` shows the same for Composer and Lightning.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from typing import List, Optional

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import seqwarm  # noqa: E402
import seqwarm.torch  # noqa: E402
from train_gpt import demo_corpus  # noqa: E402


def with_labels(batch: seqwarm.Batch) -> seqwarm.Batch:
    """GPT-2 takes the ids as labels and shifts them itself."""
    batch["labels"] = batch["input_ids"]
    return batch


def main(argv: Optional[List[str]] = None) -> List[float]:
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards")
    parser.add_argument("--vocab-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--min-len", type=int, default=16)
    parser.add_argument("--max-len", type=int, default=128)
    parser.add_argument("--batch-rows", type=int, default=8)
    parser.add_argument("--output", default=None, help="the Trainer's output_dir (default: a temporary one)")
    args = parser.parse_args(argv)

    # The demo corpus's documents have no EOS: the loader appends id 1. Shards from `seqwarm
    # preprocess` end each document with the EOS their manifest names: nothing to append.
    eos_id = 1 if args.shards is None else None
    scratch = tempfile.TemporaryDirectory(prefix="seqwarm-hf-")
    shards = args.shards
    if shards is None:
        shards = os.path.join(scratch.name, "data")
        os.makedirs(shards)
        demo_corpus(shards, args.vocab_size)

    schedule = seqwarm.Schedule.linear(min=args.min_len, max=args.max_len, duration=0.3, total=args.steps)
    loader = seqwarm.Loader(shards, schedule, batch_rows=args.batch_rows, eos_id=eos_id, dtype="i64", epochs=0, max_steps=args.steps)

    config = GPT2Config(
        vocab_size=args.vocab_size, n_positions=args.max_len, n_embd=64, n_layer=2, n_head=4, bos_token_id=1, eos_token_id=1
    )
    model = GPT2LMHeadModel(config)
    seqwarm.torch.warm_pass(model, args.batch_rows, args.max_len, args.vocab_size)

    class SeqwarmTrainer(Trainer):
        # The loader makes whole batches of the scheduled shape: no sampler, no collation.
        def get_train_dataloader(self) -> DataLoader:
            return DataLoader(loader, batch_size=None, collate_fn=with_labels)

    training = TrainingArguments(
        output_dir=args.output or os.path.join(scratch.name, "out"),
        max_steps=args.steps,
        learning_rate=3e-3,
        lr_scheduler_type="cosine",
        warmup_steps=max(1, args.steps // 20),
        logging_steps=10,
        report_to=[],
        save_strategy="no",
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
    )
    trainer = SeqwarmTrainer(model=model, args=training)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    loader.close()
    scratch.cleanup()
    return losses


if __name__ == "__main__":
    print(main())
