"""Reading seqwarm shards back as documents, for inspection: which ids each document holds,
in the order the loader reads them (``seqwarm.Loader`` is the way to train on them)."""

from __future__ import annotations

import os
from typing import Any, List, Optional, Union

from seqwarm import _seqwarm
from seqwarm._json import path_text
from seqwarm.errors import DataError

#: The footer key of a flat shard's document lengths (``seqwarm_format::flat``).
_LENGTHS_KEY = b"seqwarm.document_lengths"


def _bad(path: str, reason: str, row_group: Optional[int] = None) -> DataError:
    where = path if row_group is None else f"{path} row group {row_group}"
    error = DataError(f"{where}: {reason}")
    error.file = path
    error.row_group = row_group
    return error


def shard_files(location: Union[str, "os.PathLike[str]"]) -> List[str]:
    """The shards at a local ``location`` in the loader's order: a directory's ``.parquet``
    files (not its subdirectories') sorted by name, the files a glob matches, or one file."""
    return _seqwarm.shard_files(path_text(location, "location"))


def read_documents(path: Union[str, "os.PathLike[str]"]) -> Any:
    """One shard's documents as a ``pyarrow.Table``: ``document`` (int64, its index in the
    shard) and ``input_ids`` (``list<int32>``: the ids, the EOS the run appended included).
    Reads the flat layout (any encoding; lengths from the footer) and the rows layout."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    text = path_text(path, "path")
    try:
        file = pq.ParquetFile(text)
    except (OSError, pa.ArrowException) as e:
        raise _bad(text, f"not readable as Parquet: {e}") from None
    names = file.schema_arrow.names
    lengths_text = (file.metadata.metadata or {}).get(_LENGTHS_KEY)
    if lengths_text is None:
        if "input_ids" not in names:
            raise _bad(text, f"not a seqwarm shard: no {_LENGTHS_KEY.decode()} in its footer and no input_ids column (columns: {names})")
        ids = file.read(columns=["input_ids"]).column("input_ids").cast(pa.list_(pa.int32()))
    else:
        groups = _seqwarm.document_lengths(lengths_text.decode("utf-8", "replace"))
        if groups is None or len(groups) != file.num_row_groups or "tokens" not in names:
            raise _bad(text, f"its footer's {_LENGTHS_KEY.decode()} does not describe its {file.num_row_groups} row groups of tokens")
        pieces = []
        for group, lengths in enumerate(groups):
            column = file.read_row_group(group, columns=["tokens"]).column(0).combine_chunks()
            if pa.types.is_fixed_size_binary(column.type):  # uint16, little-endian
                values = np.frombuffer(column.buffers()[1], dtype="<u2", count=len(column), offset=column.offset * 2).astype(np.int32)
            else:
                values = column.to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
            if sum(lengths) != len(values):
                raise _bad(text, f"its documents' lengths add up to {sum(lengths)} tokens, it holds {len(values)}", group)
            offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
            np.cumsum(lengths, out=offsets[1:])
            pieces.append(pa.ListArray.from_arrays(pa.array(offsets), pa.array(values)))
        ids = pa.chunked_array(pieces, type=pa.list_(pa.int32()))
    return pa.table({"document": pa.array(np.arange(len(ids), dtype=np.int64)), "input_ids": ids})
