"""`seqwarm preprocess --tokenizer tokenizer.json` against the Python `tokenizers` package on the
same file and texts: the ids must be identical, document by document (BOS from the
post-processor, EOS appended), for the three model families open models ship (byte-level BPE,
Unigram, WordPiece), each trained here on a small corpus."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import List, Optional

import pyarrow.parquet as pq
import pytest

tokenizers = pytest.importorskip("tokenizers")
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers  # noqa: E402

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "def add(a, b):\n    return a + b  # ünïcödé comment\n",
    "Ça coûte 12,50 € — naïve café, Œuvre.",
    "日本語のテキストと한국어 텍스트, and emoji 🦀🚀 in between.",
    "   leading and trailing spaces   \t\ttabs\n\n\nnewlines   ",
    "",
    "ALL CAPS SHOUTING AND MiXeD cAsE, numbers 3.14159 2718281828 and symbols <>&%$#@!",
    "</s> special token text inside a document <s> and [SEP] too",
] * 12 + [f"document {i}: " + "word " * (i % 37) + "end" for i in range(200)]


def byte_level_bpe() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(TEXTS, trainer)
    # Llama-style: a BOS before every document, from the post-processor.
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    return tok


def unigram() -> Tokenizer:
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=400, special_tokens=["<unk>", "</s>"], unk_token="<unk>")
    tok.train_from_iterator(TEXTS, trainer)
    return tok


def t5_like() -> Tokenizer:
    # A Unigram whose post-processor ends every document with its EOS, as T5's does: seqwarm
    # must not append a second one.
    tok = unigram()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))])
    return tok


def wordpiece() -> Tokenizer:
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=500, special_tokens=["[UNK]", "[CLS]", "[SEP]"])
    tok.train_from_iterator(TEXTS, trainer)
    tok.post_processor = processors.BertProcessing(("[SEP]", tok.token_to_id("[SEP]")), ("[CLS]", tok.token_to_id("[CLS]")))
    return tok


def preprocessed(seqwarm_bin: str, tmp_path: Path, tokenizer: Path, *flags: str) -> List[List[int]]:
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    out = tmp_path / "shards"
    subprocess.run([seqwarm_bin, "preprocess", str(docs), "-o", str(out), "--tokenizer", str(tokenizer), "--layout", "rows", *flags],
                   check=True, capture_output=True)  # fmt: skip
    rows: List[List[int]] = []
    for shard in sorted(out.glob("*.parquet")):
        rows.extend(pq.read_table(shard, columns=["input_ids"]).column(0).to_pylist())
    return rows


@pytest.mark.parametrize(
    "build, eos, how",
    [(byte_level_bpe, "</s>", "config"), (unigram, "</s>", "flag"), (t5_like, "</s>", "flag"), (wordpiece, None, "none")],
    ids=["byte-level-bpe", "unigram", "t5-like", "wordpiece"],
)
def test_ids_match_the_python_package(build, eos: Optional[str], how: str, seqwarm_bin: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tok = build()
    # Truncation and padding in the file would cut documents: seqwarm turns them off.
    tok.enable_truncation(8)
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    tok.no_truncation()
    flags: List[str] = []
    if how == "config":
        (tmp_path / "tokenizer_config.json").write_text(json.dumps({"eos_token": eos}))
    elif how == "flag":
        flags = ["--eos-token", eos]  # type: ignore[list-item]
    else:
        flags = ["--no-eos"]
    got = preprocessed(seqwarm_bin, tmp_path, path, *flags)
    eos_id = tok.token_to_id(eos) if eos else None
    expected = [e.ids + ([eos_id] if eos_id is not None and e.ids[-1:] != [eos_id] else []) for t, e in zip(TEXTS, tok.encode_batch(TEXTS)) if t]
    if build is t5_like:
        assert all(ids.count(eos_id) == 1 for ids in expected[:5])
    assert len(got) == len(expected)
    for i, (g, e) in enumerate(zip(got, expected)):
        assert g == e, f"document {i}"
    manifest = json.loads((tmp_path / "shards" / "manifest.json").read_text())
    assert manifest["vocab_size"] == max(tok.get_vocab().values()) + 1


def test_a_tokenizer_json_without_an_eos_needs_one_or_no_eos(seqwarm_bin: str, tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.json"
    wordpiece().save(str(path))
    docs = tmp_path / "docs.jsonl"
    docs.write_text(json.dumps({"text": "hello"}) + "\n")
    done = subprocess.run([seqwarm_bin, "preprocess", str(docs), "-o", str(tmp_path / "out"), "--tokenizer", str(path)],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode != 0
    assert "--eos-token" in done.stderr and "--no-eos" in done.stderr, done.stderr
