"""P4: teacher-cache bytes per student token at k = 128, and the KD loss from the cache vs from the uncompressed live
signal (relative error of the summed KD loss over the cached windows), side by side in one run: the embedded pair's
trained teacher (vocabulary 4,096) and a random-init teacher of the reference architecture's vocabulary and width
(151,936 ids, hidden 1024, one layer; its near-uniform top-k is the worst case for the id encoding).

    python bench/p4_cache_size.py             # goals: <= 300 bytes per student token, KD within 1 %
"""
import tempfile
from pathlib import Path

import torch
from _common import embedded_run, realistic_models, say

from sad_kaggle.cache import open_cache
from sad_kaggle.cache_writer import cache_stats, write_cache
from sad_kaggle.teacher import student_forward


def measure(cfg, out: Path, n_batches: int = 8):
    man = write_cache(cfg, out, hidden=False, shard_windows=128, log=lambda *a: None)
    st = cache_stats(man)
    ccfg = cfg.replace(**{f"alpha_{c}": 0.0 for c in ("feature", "layerwise", "contrastive", "attention", "router")})
    keep = ("teacher_model", "teacher_tokenizer", "kd_top_k", *(f"alpha_{c}" for c in
            ("feature", "layerwise", "contrastive", "attention", "router")))
    _, acc, run = embedded_run(**{k: getattr(ccfg, k) for k in keep})
    pair, data, obj, collate = run.pair, run.data, run.objectives, run.collate
    ct = open_cache(out, ccfg, pair.teacher_tokenizer, pair.student_tokenizer, data, run.teacher.student_of_teacher)
    live_sum = cached_sum = 0.0
    with torch.no_grad():
        for j in range(n_batches):
            idx = list(range(j * cfg.batch_size, (j + 1) * cfg.batch_size))
            batch = {**collate([data.train[i] for i in idx]), "window_index": torch.tensor(idx)}
            so = student_forward(pair.student, batch, [])
            live = run.teacher.signal(batch, "train", obj.spec)
            live_sum += float(obj(batch, so, live)[0]["kd"])
            cached_sum += float(obj(batch, so, ct.signal(batch, "train", obj.spec))[0]["kd"])
    rel = abs(cached_sum - live_sum) / live_sum
    say(f"  {st['windows']} windows, {st['chunks']:,} chunk ends, {st['student_tokens']:,} student tokens: "
        f"{st['signal_bytes_per_token']:.1f} bytes per student token; KD live {live_sum:.3f}, cached {cached_sum:.3f} "
        f"(relative error {rel:.2e})")
    return st["signal_bytes_per_token"], rel


if __name__ == "__main__":
    tmp = Path(tempfile.mkdtemp())
    cfg, *_ = embedded_run(kd_top_k=128)
    say("embedded pair (trained teacher, vocabulary 4,096), k = 128:")
    b_tiny, e_tiny = measure(cfg, tmp / "tiny")
    teacher, _ = realistic_models(teacher_layers=1)
    teacher.save_pretrained(tmp / "teacher-151936")
    say("random-init teacher, vocabulary 151,936, hidden 1024 (1 layer), k = 128, the embedded texts and tokenizers:")
    b_ref, e_ref = measure(cfg.replace(teacher_model=str(tmp / "teacher-151936"), teacher_tokenizer="sad_kaggle:tiny-teacher"),
                           tmp / "ref")
    say(f"P4 cache bytes per student token at k = 128: embedded {b_tiny:.0f}, 151,936-vocabulary random teacher {b_ref:.0f} "
        f"(goal <= 300); KD relative error {e_tiny:.1e} / {e_ref:.1e} (goal <= 1e-2)")
