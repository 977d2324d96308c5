"""P6: how fast `sad-cache` writes, as a fraction of the teacher's plain forward on the same windows (logits at every
position, batches already collated), side by side in one run (alternating), CPU, with every objective on (so hidden
states are stored too): on the embedded pair, and with a teacher of the reference architecture (Qwen3-MoE, 28 layers,
vocabulary 151,936, random init, fp32; top-k over all its rows) on the embedded windows. Also against the signal
alone: the forward plus what the cache stores (top-k and tail at the chunk ends, chunk log-likelihoods, hidden
states). The writer adds reading and collating the windows, moving the signal to the host, encoding it and writing
the shards and the manifest. The run's set-up (models, windows) is shared, as it is amortized over a real cache's
hours.

    python bench/p6_cache_speed.py            # goal: ratio >= 0.9
"""
import dataclasses
import tempfile
from pathlib import Path

import torch
from _common import alternating, embedded_run, full_vocab_teacher, realistic_models, say

from sad_kaggle.cache_writer import write_cache
from sad_kaggle.teacher import SignalSpec


def speeds(cfg, run, reps: int) -> float:
    "Prints the three speeds; returns sad-cache's ÷ the teacher's forward alone."
    ds, model = run.data.train, run.teacher.model
    layers = tuple(t for _, t in run.objectives.pairs)
    spec = SignalSpec(top_k=cfg.kd_top_k, temperature=cfg.temperature, hidden_layers=layers, chunk_likelihood=True)
    batches = [run.collate([ds[i] for i in range(j, min(j + cfg.batch_size, len(ds)))]) for j in range(0, len(ds), cfg.batch_size)]
    say(f"  {len(ds)} windows, batch {cfg.batch_size} x {cfg.max_length}, top-{cfg.kd_top_k}, hidden layers {layers}")

    def forward_alone():
        with torch.no_grad():
            for b in batches: model(input_ids=b["teacher_input_ids"], attention_mask=b["teacher_attention_mask"])

    def signal_alone():
        with torch.no_grad():
            for b in batches: run.teacher.signal(b, "train", spec)

    tmp = Path(tempfile.mkdtemp())
    written = iter(range(1000))
    def cache():                                           # a fresh directory each time: nothing to skip
        write_cache(cfg, tmp / f"c{next(written)}", splits=("train",), shard_windows=256, log=lambda *a: None, run=run)

    t = alternating({"teacher forward": forward_alone, "signal alone": signal_alone, "sad-cache": cache}, reps)
    for what, s in t.items():
        say(f"  {what}: {s:.2f} s, {len(ds) / s:,.1f} windows/s")
    say(f"  sad-cache speed ÷ signal alone: {t['signal alone'] / t['sad-cache']:.2f}; "
        f"signal alone ÷ teacher forward: {t['teacher forward'] / t['signal alone']:.2f}")
    return t["teacher forward"] / t["sad-cache"]


if __name__ == "__main__":
    torch.manual_seed(0)
    results = {}
    say("embedded pair:")
    cfg, acc, run = embedded_run(kd_top_k=128, dataset_subset_size=1024)
    results["embedded"] = speeds(cfg, run, reps=5)

    say("teacher of the reference architecture (random init, 28 layers, vocabulary 151,936) on the embedded windows:")
    cfg, acc, run = embedded_run(kd_top_k=128, dataset_subset_size=16)
    teacher, _ = realistic_models()
    run = dataclasses.replace(run, teacher=full_vocab_teacher(teacher, run.pair.teacher_tokenizer, run.teacher.student_of_teacher))
    results["reference teacher"] = speeds(cfg, run, reps=3)
    say(f"P6 sad-cache speed ÷ teacher forward alone: {', '.join(f'{k} {v:.2f}' for k, v in results.items())} (goal >= 0.9)")
