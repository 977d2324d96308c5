"""P2: an optimizer step with the teacher's signal read from a sad-cache cache ÷ a plain student CE step, side by side in
one run, on the embedded pair and with a SmolLM-135M-shaped student (random init, vocabulary 49,152), CPU.

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


if __name__ == "__main__":
    torch.manual_seed(0)
    tmp = Path(tempfile.mkdtemp())
    base, *_ = embedded_run(kd_top_k=128)
    write_cache(base, tmp / "cache", shard_windows=64, log=lambda *a: None)
    cfg, acc, run = embedded_run(kd_top_k=128, teacher_cache=str(tmp / "cache"),
                                 **{f"alpha_{c}": 0.0 for c in ("attention", "router")})
    assert run.pair.teacher is None                       # no teacher weights in this process
    pair, obj = run.pair, run.objectives
    batch = first_batch(run.data, run.collate, cfg.batch_size)
    say(f"embedded pair, k = 128: batch {cfg.batch_size} x {cfg.max_length}, components {obj.components()}")
    r_tiny = ratio(cfg, run.teacher, pair.student, obj, batch, reps=7)
    say(f"  ratio {r_tiny:.3f}")

    _, student = realistic_models(teacher_layers=1)
    obj_r = Objectives(cfg, model_dims(student), run.teacher.dims, False, run.teacher.student_of_teacher)
    small = {k: v[:2] for k, v in batch.items()}
    say(f"SmolLM-135M-shaped student (random init, vocabulary {student.config.vocab_size:,}): batch 2 x {cfg.max_length}")
    r_ref = ratio(cfg, run.teacher, student, obj_r, small, reps=5)
    say(f"  ratio {r_ref:.3f}")
    say(f"P2 cached step ÷ plain CE step: embedded {r_tiny:.2f}, SmolLM-135M shape {r_ref:.2f} (goal <= 1.10)")
