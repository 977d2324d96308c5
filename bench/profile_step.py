"""Where a cached-teacher step's time goes beyond a plain CE step: torch.profiler over both steps of one student on one
batch (CPU), printed as the operators whose self time grows most, per step. Not a ratio benchmark: the table behind
P2's number, in `bench/README.md`.

    python bench/profile_step.py                       # SmolLM-135M-shaped student, every cacheable objective
    python bench/profile_step.py --student embedded --objectives defaults
"""
import argparse
import tempfile
from pathlib import Path

import torch
from _common import ce_step, embedded_run, first_batch, realistic_models, say
from torch.profiler import ProfilerActivity, profile

from sad_kaggle.cache_writer import write_cache
from sad_kaggle.config import curriculum_weights
from sad_kaggle.losses import Objectives, combine
from sad_kaggle.teacher import model_dims, student_forward


def per_step_ms(fn, steps: int) -> dict:
    "Self CPU milliseconds per call of `fn`, by operator."
    for _ in range(2): fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps): fn()
    return {e.key: e.self_cpu_time_total / 1000 / steps for e in prof.key_averages()}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--student", choices=("smollm", "embedded"), default="smollm")
    ap.add_argument("--objectives", choices=("all", "defaults"), default="all")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args()
    torch.manual_seed(0)
    tmp = Path(tempfile.mkdtemp())
    every = args.objectives == "all"
    base, *_ = embedded_run(every_objective=every, kd_top_k=128)
    write_cache(base, tmp / "cache", shard_windows=64, log=lambda *a: None)
    off = {f"alpha_{c}": 0.0 for c in ("attention", "router")} if every else {}
    cfg, acc, run = embedded_run(every_objective=every, kd_top_k=128, teacher_cache=str(tmp / "cache"), **off)
    batch = first_batch(run.data, run.collate, cfg.batch_size)
    student, obj = run.pair.student, run.objectives
    if args.student == "smollm":
        _, student = realistic_models(teacher_layers=1)
        obj = Objectives(cfg, model_dims(student), run.teacher.dims, False, run.teacher.student_of_teacher)
        batch = {k: v[:2] for k, v in batch.items()}
    opt = torch.optim.AdamW(list(student.parameters()) + list(obj.parameters()), lr=1e-4)
    weights = curriculum_weights(cfg, 1.0)

    def cached_step():
        sig = run.teacher.signal(batch, "train", obj.spec)
        so = student_forward(student, batch, [])
        sums, _ = obj(batch, so, sig)
        loss, _, _ = combine(sums, obj.counts(batch), weights)
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)

    ours, ce = per_step_ms(cached_step, args.steps), per_step_ms(lambda: ce_step(student, batch, opt), args.steps)
    say(f"{args.student} student, {args.objectives} objectives {obj.components()}, batch {len(batch['labels'])} x "
        f"{batch['labels'].shape[1]}: self CPU per step, ours {sum(ours.values()):.0f} ms, plain CE {sum(ce.values()):.0f} ms")
    say(f"{'operator':<58} {'ours ms':>8} {'CE ms':>8} {'extra':>8}")
    for k in sorted(set(ours) | set(ce), key=lambda k: ce.get(k, 0) - ours.get(k, 0))[:args.top]:
        say(f"{k[:58]:<58} {ours.get(k, 0):>8.1f} {ce.get(k, 0):>8.1f} {ours.get(k, 0) - ce.get(k, 0):>+8.1f}")
