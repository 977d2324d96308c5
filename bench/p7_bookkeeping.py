"""P7: the bookkeeping of a large split, 200,000 windows of ~512 student and ~400 teacher ids as `make_windows` leaves
them (behind a filter's and a subset's indices): the windows' hash that a teacher cache is checked against, and the
token counts of the data report. Today's way (the stored per-window digests, Arrow list lengths) side by side with a
pass over every token (the hash of manifests without `data_scheme`, Python lengths), in one run. Synthetic ids and
digests: the cost depends on the sizes, not the values.

    python bench/p7_bookkeeping.py            # goal: <= 1 s at 200,000 windows
"""
import hashlib
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from _common import say

import datasets
from sad_kaggle.cache import data_hash
from sad_kaggle.data import column_in_order


def ids(rng, n: int, length: int, vocab: int) -> pa.Array:
    lengths = rng.integers(length - 40, length + 1, n)
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(rng.integers(0, vocab, offsets[-1])))


def seconds(fn):
    t0 = time.perf_counter(); out = fn(); return time.perf_counter() - t0, out


if __name__ == "__main__":
    datasets.disable_progress_bars()
    rng, n = np.random.default_rng(0), 200_000
    table = pa.table({"student_input_ids": ids(rng, n, 512, 49_152), "teacher_input_ids": ids(rng, n, 400, 151_936),
                      "window_sha": pa.array([hashlib.sha256(i.to_bytes(4, "little")).digest() for i in range(n)]),
                      "dropped": pa.array(np.zeros(n, bool))})
    win = datasets.Dataset(table).filter(lambda d: [not x for x in d], input_columns="dropped", batched=True,
                                         batch_size=10_000).select(range(n - 1_000))
    say(f"{len(win):,} windows, {pc.sum(pc.list_value_length(table['student_input_ids'])).as_py():,} student ids")
    t_hash, _ = seconds(lambda: data_hash(win))
    t_count, _ = seconds(lambda: [pc.sum(column_in_order(win, c, pc.list_value_length)).as_py()
                                  for c in ("student_input_ids", "teacher_input_ids")])
    say(f"  digests: hash {t_hash:.3f} s; Arrow lengths: counts {t_count:.3f} s")
    t_hash1, _ = seconds(lambda: data_hash(win, 1))
    t_count1, _ = seconds(lambda: [sum(map(len, win[c])) for c in ("student_input_ids", "teacher_input_ids")])
    say(f"  every token: hash {t_hash1:.1f} s; Python lengths: counts {t_count1:.1f} s")
    say(f"P7 bookkeeping at {len(win):,} windows: {t_hash + t_count:.2f} s (goal <= 1 s), "
        f"every-token pass {t_hash1 + t_count1:.0f} s ({(t_hash1 + t_count1) / (t_hash + t_count):.0f}x)")
