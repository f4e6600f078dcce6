"""`seqwarm preprocess --tokenizer tokenizer.json` against the Python `tokenizers` package on the
same file and texts: the ids must be identical, document by document (BOS from the
post-processor or the config, EOS appended), for the three model families open models ship
(byte-level BPE, Unigram, WordPiece), each trained here on a small corpus, and for a real
`tokenizer.json` that a package on PyPI ships (the `anthropic` SDK's 65 000-id byte-level BPE)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import List, Optional

import numpy as np
import pyarrow as pa
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


def preprocessed(seqwarm_bin: str, tmp_path: Path, tokenizer: Path, *flags: str, out: str = "shards") -> List[List[int]]:
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    shards = tmp_path / out
    subprocess.run([seqwarm_bin, "preprocess", str(docs), "-o", str(shards), "--tokenizer", str(tokenizer), "--layout", "rows", *flags],
                   check=True, capture_output=True)  # fmt: skip
    return rows_of(shards)


def rows_of(out: Path) -> List[List[int]]:
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


def test_a_bos_from_the_config_or_the_flag_comes_once(seqwarm_bin: str, tmp_path: Path) -> None:
    # Unigram has no post-processor: the BOS comes from tokenizer_config.json's add_bos_token
    # (as Llama's and Mistral's say) or from --bos-token. The byte-level BPE's post-processor
    # adds it already: not a second time.
    for build, how in [(unigram, "config"), (unigram, "flag"), (byte_level_bpe, "config")]:
        case = tmp_path / f"{build.__name__}-{how}"
        case.mkdir()
        tok = build()
        if tok.token_to_id("<s>") is None:
            tok.add_special_tokens(["<s>"])
        path = case / "tokenizer.json"
        tok.save(str(path))
        flags = ["--eos-token", "</s>"]
        if how == "config":
            (case / "tokenizer_config.json").write_text(json.dumps({"bos_token": {"content": "<s>"}, "add_bos_token": True}))
        else:
            flags += ["--bos-token", "<s>"]
        got = preprocessed(seqwarm_bin, case, path, *flags)
        bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
        own = tok.encode("").ids[:1] == [bos]
        expected = [([] if own else [bos]) + e.ids + [eos] for t, e in zip(TEXTS, tok.encode_batch(TEXTS)) if t]
        assert got == expected, f"{build.__name__} {how}"
        assert all(ids[0] == bos and ids[1] != bos for ids in got), f"{build.__name__} {how}: one BOS"


def anthropic_tokenizer_json() -> Path:
    """The `tokenizer.json` that the `anthropic` package 0.30.0 ships (a byte-level BPE of 65 000
    ids with `<SOS>` and `<EOT>`); scripts/python-env installs the wheel without its dependencies
    (only the file is used). CI must have it."""
    from importlib import metadata

    try:
        dist = metadata.distribution("anthropic")
    except metadata.PackageNotFoundError:
        assert "CI" not in os.environ, "scripts/python-env installs anthropic==0.30.0 (--no-deps) for this test"
        pytest.skip("anthropic==0.30.0 not installed (scripts/python-env installs it)")
    path = Path(str(dist.locate_file("anthropic/tokenizer.json")))
    assert path.is_file(), f"anthropic {dist.version} ships no tokenizer.json at {path}"
    return path


def flat_tokens(out: Path) -> np.ndarray:
    """Every token of a flat layout's shards, in order (uint16 as 2 little-endian bytes)."""
    parts = []
    for shard in sorted(out.glob("*.parquet")):
        column = pq.read_table(shard, columns=["tokens"]).column(0).combine_chunks()
        if pa.types.is_fixed_size_binary(column.type):
            raw = np.frombuffer(column.buffers()[1], dtype="<u2", count=column.offset + len(column))
            parts.append(raw[column.offset :].astype(np.int64))
        else:
            parts.append(column.to_numpy().astype(np.int64))
    return np.concatenate(parts)


def test_a_real_tokenizer_json_from_pypi_gives_the_python_package_s_ids(seqwarm_bin: str, tmp_path: Path) -> None:
    path = anthropic_tokenizer_json()
    tok = Tokenizer.from_file(str(path))
    bos, eos = tok.token_to_id("<SOS>"), tok.token_to_id("<EOT>")
    assert (bos, eos) == (4, 0)
    expected = [[bos] + e.ids + [eos] for t, e in zip(TEXTS, tok.encode_batch(TEXTS)) if t]
    flags = ["--bos-token", "<SOS>", "--eos-token", "<EOT>"]
    assert preprocessed(seqwarm_bin, tmp_path, path, *flags) == expected
    # The default (flat) layout: a vocabulary of at most 65 536 ids is stored as uint16.
    flat = tmp_path / "flat"
    subprocess.run([seqwarm_bin, "preprocess", str(tmp_path / "docs.jsonl"), "-o", str(flat), "--tokenizer", str(path), *flags],
                   check=True, capture_output=True)  # fmt: skip
    manifest = json.loads((flat / "manifest.json").read_text())
    assert manifest["settings"]["encoding"] == "uint16"
    assert manifest["vocab_size"] == max(tok.get_vocab().values()) + 1 <= 65536
    assert flat_tokens(flat).tolist() == [i for ids in expected for i in ids]


def test_a_vocabulary_past_65536_ids_is_stored_as_int32(seqwarm_bin: str, tmp_path: Path) -> None:
    vocab = {"[UNK]": 0, "hello": 1, "world": 2, "</s>": 70000}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    docs = tmp_path / "docs.jsonl"
    docs.write_text(json.dumps({"text": "hello world"}) + "\n" + json.dumps({"text": "world oops"}) + "\n")
    out = tmp_path / "flat"
    subprocess.run([seqwarm_bin, "preprocess", str(docs), "-o", str(out), "--tokenizer", str(path), "--eos-token", "</s>"],
                   check=True, capture_output=True)  # fmt: skip
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["vocab_size"] == 70001
    assert manifest["settings"]["encoding"] == "zstd"
    assert flat_tokens(out).tolist() == [1, 2, 70000, 2, 0, 70000]
