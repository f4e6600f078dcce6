"""Text (or token ids) into seqwarm shards from Python: the same shards and manifest as
``seqwarm preprocess``, tokenized in Rust on every core with the GIL released, crash-safe and
resumable.

::

    import seqwarm

    with seqwarm.ShardWriter("shards/", tokenizer="gpt2") as writer:
        for text in texts:
            writer.write(text)
    # shards/manifest.json: what seqwarm.Loader("shards/", ...) reads

    seqwarm.preprocess(pyarrow_table, "shards/")          # a table's "text" column
    seqwarm.preprocess_files(["corpus/"], "shards/")      # the CLI's run over files

Settings take the CLI flags' names (``tokenizer``, ``eos_token``, ``bos_token``, ``eos``,
``layout``, ``encoding``, ``shard_tokens``, ``row_group_tokens``, ``prefix``, ``worker``,
``workers``, ``on_error``, ``threads``); one left out keeps the library's default, as
``seqwarm preprocess --help`` shows it. See ``docs/preprocess.md``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

from seqwarm import _seqwarm
from seqwarm._json import path_text, to_json
from seqwarm.errors import ConfigError, DataError, StateError

#: Texts handed to Rust at once: enough that crossing into Rust costs nothing per document,
#: little enough that the writer's own batching (about a shard's worth, at most 4 MiB) decides
#: when shards are finished.
_BATCH = 1024
_BATCH_CHARS = 64 << 10


@dataclass(frozen=True)
class Manifest:
    """What a run wrote: the manifest file's path and what it says."""

    path: str
    documents: int
    tokens: int
    shards: List[str]
    skipped_documents: int
    vocab_size: int
    eos_id: Optional[int]
    settings: Dict[str, Any] = field(repr=False)

    @classmethod
    def _from(cls, path: str, text: str) -> "Manifest":
        m = json.loads(text)
        return cls(
            path=path,
            documents=m["documents"],
            tokens=m["tokens"],
            shards=[s["file"] for s in m["shards"]],
            skipped_documents=m["skipped_documents"],
            vocab_size=m["vocab_size"],
            eos_id=m["settings"]["eos_id"],
            settings=m["settings"],
        )


def _settings(given: Dict[str, Any]) -> str:
    """The settings that were given (``None`` left out), as JSON for the Rust side."""
    plain = {k: v for k, v in given.items() if v is not None}
    if "tokenizer" in plain and isinstance(plain["tokenizer"], os.PathLike):
        plain["tokenizer"] = path_text(plain["tokenizer"], "tokenizer")
    return to_json(plain)


class ShardWriter:
    """Writes documents, in the order given, into seqwarm shards in ``output``.

    ``write(text)`` takes one document's text, ``write_ids(ids)`` one already tokenized (ids
    below the tokenizer's vocabulary size; the EOS is appended as for text). ``close()`` (or the
    end of a ``with`` block) writes the rest and the manifest and returns a :class:`Manifest`.

    Shards are complete files or absent: a process killed mid-way leaves its finished shards,
    and a new ``ShardWriter`` with the same settings and ``source`` on the same directory keeps
    them; give it the same documents again, in the same order, and it skips without tokenizing
    those the shards hold (``resume_at`` says how many: only their number is checked), so
    rerunning the same code finishes the job. A ``with`` block left by an exception writes no
    manifest, for the same reason. An error stops the writer; later calls raise ``StateError``.

    ``source`` names the stream in the manifest and in errors (a path or URL of the data is a
    good name). Given the documents of a single input file in order, the shards are those of
    ``seqwarm preprocess`` on that file, byte for byte.
    """

    def __init__(
        self,
        output: Union[str, "os.PathLike[str]"],
        *,
        source: str = "python",
        tokenizer: Optional[Union[str, "os.PathLike[str]"]] = None,
        eos_token: Optional[str] = None,
        bos_token: Optional[str] = None,
        eos: Optional[bool] = None,
        layout: Optional[str] = None,
        encoding: Optional[str] = None,
        shard_tokens: Optional[int] = None,
        row_group_tokens: Optional[int] = None,
        prefix: Optional[str] = None,
        worker: Optional[int] = None,
        workers: Optional[int] = None,
        on_error: Optional[str] = None,
        threads: Optional[int] = None,
    ) -> None:
        settings = _settings(
            dict(
                tokenizer=tokenizer,
                eos_token=eos_token,
                bos_token=bos_token,
                eos=eos,
                layout=layout,
                encoding=encoding,
                shard_tokens=shard_tokens,
                row_group_tokens=row_group_tokens,
                prefix=prefix,
                worker=worker,
                workers=workers,
                on_error=on_error,
                threads=threads,
            )
        )
        self._raw = _seqwarm.RawShardWriter(path_text(output, "output"), settings, source)
        self._source = source
        self._texts: List[Optional[str]] = []
        self._chars = 0
        self._manifest: Optional[Manifest] = None
        self._stopped: Optional[str] = None

    @property
    def resume_at(self) -> int:
        """Documents at the start of the stream that an earlier run already wrote into finished
        shards (0 for a new directory; all of them when an earlier run finished): given again,
        they are neither tokenized nor written. The documents must be the same, in the same
        order: only their number is checked (a stream shorter than this is an error)."""
        return self._raw.resume_at

    @property
    def documents(self) -> int:
        """Documents given so far (written, skipped on resume or bad)."""
        return self._raw.position + len(self._texts)

    @property
    def shards(self) -> int:
        """Shards finished so far, an earlier run's included."""
        self._send()
        return self._raw.progress[2]

    def _check_open(self) -> None:
        if self._stopped is not None:
            raise StateError(f"this ShardWriter {self._stopped}: open a new one on the output directory to continue after its finished shards")

    def _stop(self, why: str) -> None:
        """An error stops the writer: what it held is dropped, as a crash would, and every later
        call says so (going on would lose documents without a word)."""
        self._stopped = why
        self._texts, self._chars = [], 0
        self._raw.abandon()

    def _check_text(self, text: Any, index: int) -> None:
        if text is not None and not isinstance(text, str):
            self._stop("stopped at a document that is not text")
            raise TypeError(
                f"{self._source} document {index + 1}: expected str (or None for a bad document), got "
                f"{type(text).__name__}; use write_ids for token ids"
            )

    def write(self, text: Optional[str]) -> None:
        """One document's text; ``None`` is a bad document (an error, or counted and skipped
        with ``on_error="skip"``)."""
        self._check_open()
        self._check_text(text, self.documents)
        self._texts.append(text)
        self._chars += len(text) if text else 0
        if len(self._texts) >= _BATCH or self._chars >= _BATCH_CHARS:
            self._send()

    def write_batch(self, texts: Iterable[Optional[str]]) -> None:
        """Documents' texts, in order."""
        self._check_open()
        first = self.documents
        texts = list(texts)
        for i, text in enumerate(texts):
            self._check_text(text, first + i)
        self._texts.extend(texts)
        self._send()

    def write_ids(self, ids: Sequence[int]) -> None:
        """One document already tokenized: a sequence of ints or a 1-D NumPy integer array."""
        self._check_open()
        self._send()
        index = self.documents
        dtype = getattr(ids, "dtype", None)
        try:
            if dtype is not None and (dtype.kind not in "iu" or getattr(ids, "ndim", 1) != 1):
                raise TypeError(f"a {getattr(ids, 'ndim', '?')}-D array of {dtype}; expected 1-D integers")
            tolist = getattr(ids, "tolist", None)
            values = tolist() if callable(tolist) else list(ids)
            self._raw.write_ids(values)
        except (TypeError, OverflowError) as e:
            self._stop("stopped at ids that are not token ids")
            error = DataError(f"{self._source} document {index + 1}: not token ids below the vocabulary size: {e}")
            raise error from None
        except Exception as e:
            self._stop(f"stopped at an error ({e})")
            raise

    def write_table(self, table: Any, column: str = "text") -> None:
        """The strings of ``column`` of a ``pyarrow.Table`` or ``RecordBatch`` (or a batch
        reader), one document per row; nulls are bad documents."""
        if hasattr(table, "to_batches"):  # a Table
            batches = table.to_batches(max_chunksize=_BATCH)
        elif _is_table(table):  # a RecordBatch
            batches = [table]
        else:  # a RecordBatchReader, or any iterable of batches
            batches = table
        for batch in batches:
            if column not in batch.schema.names:
                error = ConfigError(f"text_column: no column {column!r} (columns: {batch.schema.names})")
                error.field = "text_column"
                raise error
            kind = str(batch.schema.field(column).type)
            if kind not in ("string", "large_string", "string_view") and not kind.startswith("dictionary<values=string"):
                error = ConfigError(f"text_column: column {column!r} holds {kind}, not text")
                error.field = "text_column"
                raise error
            self.write_batch(batch.column(column).to_pylist())

    def _send(self) -> None:
        if self._texts:
            texts, self._texts, self._chars = self._texts, [], 0
            try:
                self._raw.write_texts(texts)
            except Exception as e:
                self._stop(f"stopped at an error ({e})")
                raise

    def close(self) -> Manifest:
        """Writes what is left, the last shard and the manifest (``manifest.json`` when this
        is the only worker, and ``manifest-wIIIII-of-NNNNN.json``); returns it. A second call
        returns the same."""
        if self._manifest is None:
            self._check_open()
            self._send()
            try:
                path, text = self._raw.finish()
            except Exception as e:
                self._stopped = f"stopped at an error ({e})"
                raise
            self._manifest = Manifest._from(path, text)
            self._stopped = "is closed"
        return self._manifest

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> None:
        if kind is None:
            self.close()
        elif self._stopped is None:
            # No manifest for a stream that did not end: the finished shards stay for a resume.
            self._stop("stopped at an exception in its with block")


def _is_table(documents: Any) -> bool:
    return hasattr(documents, "schema") and hasattr(documents, "column")


def preprocess(
    documents: Any,
    output: Union[str, "os.PathLike[str]"],
    *,
    text_column: str = "text",
    **settings: Any,
) -> Manifest:
    """Writes ``documents`` into seqwarm shards in ``output`` and returns the manifest.

    ``documents`` is an iterable of ``str`` (one document each) or of token-id sequences
    (lists or NumPy arrays: already tokenized), a ``pyarrow.Table`` / ``RecordBatch`` (or an
    iterable of them), a pandas ``DataFrame`` or a Hugging Face ``datasets.Dataset``, whose
    ``text_column`` holds the text. Into a directory an earlier run finished, the same documents
    change nothing, more are appended after them, and fewer are an error. ``settings`` are :class:`ShardWriter`'s, ``source`` included.
    """
    if isinstance(documents, (str, bytes, dict)):
        raise TypeError(
            f"documents: a {type(documents).__name__} is not a collection of documents; give an iterable of str "
            "or of token ids, a pyarrow Table, a pandas DataFrame or a datasets.Dataset"
        )
    if hasattr(documents, "columns") and hasattr(documents, "iloc"):  # a pandas DataFrame
        if text_column not in documents.columns:
            error = ConfigError(f"text_column: no column {text_column!r} (columns: {list(documents.columns)})")
            error.field = "text_column"
            raise error
        documents = documents[text_column].tolist()
    with ShardWriter(output, **settings) as writer:
        if hasattr(documents, "with_format") and hasattr(documents, "column_names"):
            # A datasets.Dataset: its Arrow table, a batch at a time, without Python dicts.
            for batch in documents.with_format("arrow").iter(batch_size=_BATCH):
                writer.write_table(batch, text_column)
        elif _is_table(documents):
            writer.write_table(documents, text_column)
        else:
            for item in documents:
                if item is None or isinstance(item, str):
                    writer.write(item)
                elif isinstance(item, (bytes, bytearray)):
                    writer._stop("stopped at a document that is not text")
                    raise TypeError(f"document {writer.documents + 1}: bytes; decode text to str, or give token ids as a list")
                elif _is_table(item):
                    writer.write_table(item, text_column)
                else:
                    writer.write_ids(item)
    return writer.close()


def preprocess_files(
    inputs: Union[str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]]],
    output: Union[str, "os.PathLike[str]"],
    *,
    input_format: Optional[str] = None,
    text_field: Optional[str] = None,
    text_column: Optional[str] = None,
    separator: Optional[str] = None,
    **settings: Any,
) -> Manifest:
    """``seqwarm preprocess INPUTS -o OUTPUT``: files, directories or globs, read as the CLI
    reads them (``input_format``, ``text_field``, ``text_column``, ``separator``), into the
    CLI's shards and manifest, byte for byte; resumable as the CLI is. ``settings`` are
    :class:`ShardWriter`'s (not ``source``)."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    paths = [path_text(p, "inputs") for p in inputs]
    given = dict(
        settings,
        input_format=input_format,
        text_field=text_field,
        text_column=text_column,
        separator=separator,
    )
    path, text = _seqwarm.preprocess_files(paths, path_text(output, "output"), _settings(given))
    return Manifest._from(path, text)


def merge_manifests(
    manifests: Sequence[Union[str, "os.PathLike[str]"]],
    output: Union[str, "os.PathLike[str]"],
) -> Manifest:
    """``seqwarm merge-manifests``: joins the workers' manifests (files, or directories holding
    ``manifest-w*-of-*.json``) into ``output``, the one manifest the loader reads. Every worker
    must be there, with the same settings."""
    paths = [path_text(p, "manifests") for p in manifests]
    path, text = _seqwarm.merge_manifests(paths, path_text(output, "output"))
    return Manifest._from(path, text)
