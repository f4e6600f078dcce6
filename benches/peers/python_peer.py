"""The Python way to do seqwarm's job, for `seqwarm bench --peer python`.

pyarrow reads the token column row group by row group; numpy concatenates the tokens into rows
of the maximum length, takes a batch of rows per step, and applies Composer's
set_batch_sequence_length (truncate, or reshape) at the schedule's length for that step. The
schedule's change points come from seqwarm (`--schedule`), so both follow the same lengths.

Prints one JSON object: tokens/s for raw decode and for each mode.
"""

import argparse
import json
import os
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shards", nargs="+", required=True)
    ap.add_argument("--column", required=True)
    ap.add_argument("--schedule", required=True, help="JSON [[step, seq_len], ...] change points")
    ap.add_argument("--max-len", type=int, required=True)
    ap.add_argument("--batch-tokens", type=int, required=True)
    ap.add_argument("--threads", choices=["one", "all"], default="one")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    if args.threads == "one":
        os.environ["OMP_NUM_THREADS"] = "1"
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    if args.threads == "one":
        pa.set_cpu_count(1)
        pa.set_io_thread_count(1)
    use_threads = args.threads == "all"
    points = json.loads(args.schedule)

    def seq_len(step):
        length = points[0][1]
        for at, value in points:
            if at <= step:
                length = value
            else:
                break
        return length

    def row_groups():
        for path in args.shards:
            f = pq.ParquetFile(path)
            for i in range(f.num_row_groups):
                column = f.read_row_group(i, columns=[args.column], use_threads=use_threads).column(0)
                chunk = column.combine_chunks()
                if pa.types.is_list(chunk.type) or pa.types.is_large_list(chunk.type):
                    chunk = chunk.flatten()
                if pa.types.is_fixed_size_binary(chunk.type):
                    # seqwarm's default `uint16` shards: 2 little-endian bytes a token
                    # (docs/formats.md), not integers to Arrow.
                    if chunk.type.byte_width != 2 or chunk.null_count:
                        raise SystemExit(f"{path}: row group {i}: {chunk.type} tokens are not uint16")
                    values = np.frombuffer(chunk.buffers()[1], dtype="<u2")
                    yield values[chunk.offset : chunk.offset + len(chunk)]
                    continue
                yield chunk.to_numpy(zero_copy_only=False)

    def raw():
        n = 0
        for tokens in row_groups():
            n += len(tokens)
        return n

    def pipeline(truncate):
        max_len, n, step = args.max_len, 0, 0
        carry = np.empty(0, dtype=np.int32)
        for tokens in row_groups():
            stream = np.concatenate([carry, tokens.astype(np.int32, copy=False)])
            at = 0
            while True:
                length = seq_len(step)
                # As seqwarm: a token budget bounds the batch the model sees, so truncate takes
                # budget // length rows and reshape budget // max_len rows of max length.
                rows = max(1, args.batch_tokens // (length if truncate else max_len))
                need = rows * max_len
                if len(stream) - at < need:
                    break
                batch = stream[at : at + need].reshape(rows, max_len)
                at += need
                if length < max_len:
                    if truncate:
                        batch = np.ascontiguousarray(batch[:, :length])
                    else:
                        keep = batch.size // length * length
                        batch = batch.reshape(-1)[:keep].reshape(-1, length)
                n += need
                step += 1
            carry = stream[at:]
        return n

    result = {"threads": args.threads}
    for name, job in [("raw", raw), ("truncate", lambda: pipeline(True)), ("reshape", lambda: pipeline(False))]:
        best = None
        tokens = 0
        for _ in range(args.repeat):
            started = time.perf_counter()
            tokens = job()
            elapsed = time.perf_counter() - started
            best = elapsed if best is None else min(best, elapsed)
        result[name] = {"tokens": tokens, "seconds": best, "tokens_per_s": tokens / best}
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
