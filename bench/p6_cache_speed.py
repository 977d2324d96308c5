"""P6: how fast `sad-cache` writes, as a fraction of the teacher's plain forward on the same windows (logits at every
position, batches already collated), side by side in one run on the embedded pair (every objective on, so hidden
states are stored too), CPU. Also against the signal alone: the forward plus what the cache stores (top-k and tail at
the chunk ends, chunk log-likelihoods, hidden states). The writer adds reading and collating the windows, moving the
signal to the host, encoding it and writing the shards and the manifest. The run's set-up (models, windows) is
shared, as it is amortized over a real cache's hours.

    python bench/p6_cache_speed.py            # goal: ratio >= 0.9
"""
import tempfile
from pathlib import Path

import torch
from _common import embedded_run, median_seconds, say

from sad_kaggle.cache_writer import write_cache
from sad_kaggle.teacher import SignalSpec

if __name__ == "__main__":
    torch.manual_seed(0)
    cfg, acc, run = embedded_run(kd_top_k=128, dataset_subset_size=1024)
    ds = run.data.train
    layers = tuple(t for _, t in run.objectives.pairs)
    spec = SignalSpec(top_k=cfg.kd_top_k, temperature=cfg.temperature, hidden_layers=layers, chunk_likelihood=True)
    batches = [run.collate([ds[i] for i in range(j, min(j + cfg.batch_size, len(ds)))]) for j in range(0, len(ds), cfg.batch_size)]
    say(f"embedded pair: {len(ds)} windows, batch {cfg.batch_size} x {cfg.max_length}, top-{cfg.kd_top_k}, hidden layers {layers}")

    def forward_alone():
        with torch.no_grad():
            for b in batches: run.pair.teacher(input_ids=b["teacher_input_ids"], attention_mask=b["teacher_attention_mask"])

    def signal_alone():
        with torch.no_grad():
            for b in batches: run.teacher.signal(b, "train", spec)

    tmp = Path(tempfile.mkdtemp())
    written = iter(range(1000))
    def cache():                                           # a fresh directory each time: nothing to skip
        write_cache(cfg, tmp / f"c{next(written)}", splits=("train",), shard_windows=256, log=lambda *a: None, run=run)

    t_forward, t_signal, t_cache = (median_seconds(fn, reps=5, warmup=1) for fn in (forward_alone, signal_alone, cache))
    for what, t in (("teacher forward", t_forward), ("signal alone", t_signal), ("sad-cache", t_cache)):
        say(f"  {what}: {t:.2f} s, {len(ds) / t:,.1f} windows/s")
    say(f"  sad-cache speed ÷ signal alone: {t_signal / t_cache:.2f}")
    say(f"P6 sad-cache speed ÷ teacher forward alone: {t_forward / t_cache:.2f} (goal >= 0.9)")
