"""P2: an optimizer step with the teacher's signal read from a sad-cache cache ÷ a plain student CE step, side by side in
one run (alternating), CPU: on the embedded pair and with a SmolLM-135M-shaped student (random init, vocabulary
49,152), each with the default objectives (LM + KD) and with every objective a cache serves; and a student with a
50,257-token vocabulary (GPT-2's size) trained with KD alone.

    python bench/p2_cached_step.py            # goal: ratio <= 1.10
"""
import tempfile
from pathlib import Path

import torch
from _common import ce_step, embedded_run, first_batch, realistic_models, say, side_by_side

from sad_kaggle.cache_writer import write_cache
from sad_kaggle.config import curriculum_weights
from sad_kaggle.losses import Objectives, combine
from sad_kaggle.teacher import model_dims, student_forward


def ratio(cfg, cached, student, obj, batch, reps):
    opt = torch.optim.AdamW(list(student.parameters()) + list(obj.parameters()), lr=1e-4)
    weights = curriculum_weights(cfg, 1.0)

    def cached_step():
        sig = cached.signal(batch, "train", obj.spec)
        so = student_forward(student, batch, [])
        sums, _ = obj(batch, so, sig)
        loss, _, _ = combine(sums, obj.counts(batch), weights)
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)

    return side_by_side("cached-teacher step", cached_step, "plain CE step", lambda: ce_step(student, batch, opt), reps)


def cached_run(tmp: Path, every: bool, **over):
    "The embedded run reading a cache written for it (attention and router off: a cache cannot serve them)."
    name = f"cache-{'all' if every else 'defaults'}"
    if not (tmp / name).exists():
        base, *_ = embedded_run(every_objective=every, kd_top_k=128)
        write_cache(base, tmp / name, shard_windows=64, log=lambda *a: None)
    off = {f"alpha_{c}": 0.0 for c in ("attention", "router")} if every else {}
    cfg, acc, run = embedded_run(every_objective=every, kd_top_k=128, teacher_cache=str(tmp / name), **off, **over)
    assert run.pair.teacher is None                       # no teacher weights in this process
    return cfg, run


if __name__ == "__main__":
    torch.manual_seed(0)
    tmp = Path(tempfile.mkdtemp())
    results = {}
    for every in (False, True):
        cfg, run = cached_run(tmp, every)
        pair, obj = run.pair, run.objectives
        batch = first_batch(run.data, run.collate, cfg.batch_size)
        label = "every objective" if every else "defaults"
        say(f"embedded pair, {label} {obj.components()}, k = 128: batch {cfg.batch_size} x {cfg.max_length}")
        results[f"embedded, {label}"] = ratio(cfg, run.teacher, pair.student, obj, batch, reps=9)
        _, student = realistic_models(teacher_layers=1)
        obj_r = Objectives(cfg, model_dims(student), run.teacher.dims, False, run.teacher.student_of_teacher)
        small = {k: v[:2] for k, v in batch.items()}
        say(f"SmolLM-135M-shaped student (random init, vocabulary {student.config.vocab_size:,}), {label}: batch 2 x {cfg.max_length}")
        results[f"SmolLM-135M shape, {label}"] = ratio(cfg, run.teacher, student, obj_r, small, reps=5)

    # KD alone, a 50,257-token student (the LM loss is still computed and logged, at weight 0)
    cfg, run = cached_run(tmp, False, alpha_lm=0.0)
    _, student = realistic_models(teacher_layers=1, student_vocab=50_257)
    obj_k = Objectives(cfg, model_dims(student), run.teacher.dims, False, run.teacher.student_of_teacher)
    batch = {k: v[:2] for k, v in first_batch(run.data, run.collate, cfg.batch_size).items()}
    say(f"SmolLM-135M shape with a 50,257-token vocabulary, KD alone (weights "
        f"{ {c: w for c, w in curriculum_weights(cfg, 1.0).items() if w} }): batch 2 x {cfg.max_length}")
    results["50k vocabulary, KD alone"] = ratio(cfg, run.teacher, student, obj_k, batch, reps=5)
    say(f"P2 cached step ÷ plain CE step: {', '.join(f'{k} {v:.2f}' for k, v in results.items())} (goal <= 1.10)")
