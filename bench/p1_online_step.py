"""P1: an optimizer step with the live teacher ÷ (teacher forward + plain student CE step), measured side by side in one
run (alternating), on the embedded pair and on the reference architectures (random init, fp32, CPU; the teacher's
top-k over all its 151,936 rows), with the default
objectives (LM + KD; SDPA attention on both sides) and with every objective (eager attention on both sides: the
attention objective needs the maps).

    python bench/p1_online_step.py            # goal: ratio <= 1.15
"""
import torch
from _common import ce_step, embedded_run, first_batch, full_vocab_teacher, realistic_models, say, side_by_side

from sad_kaggle.config import curriculum_weights
from sad_kaggle.losses import Objectives, combine
from sad_kaggle.teacher import model_dims, student_forward


def ratio(cfg, teacher, student, obj, batch, reps):
    "`teacher`: a `LiveTeacher` (the source the trainer reads)."
    params = list(student.parameters()) + list(obj.parameters())
    opt = torch.optim.AdamW(params, lr=1e-4)
    weights = curriculum_weights(cfg, 1.0)             # late in the run: every component on
    att = [s for s, _ in obj.att_pairs]

    def full_step():
        sig = teacher.signal(batch, "train", obj.spec)
        so = student_forward(student, batch, att)
        sums, _ = obj(batch, so, sig)
        loss, _, _ = combine(sums, obj.counts(batch), weights)
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)

    def baseline():
        with torch.no_grad():
            teacher.model(input_ids=batch["teacher_input_ids"], attention_mask=batch["teacher_attention_mask"]).logits
        ce_step(student, batch, opt)

    return side_by_side("our step", full_step, "teacher forward + CE step", baseline, reps)


if __name__ == "__main__":
    torch.manual_seed(0)
    results = {}
    teacher = student = None
    for every in (False, True):
        label = "every objective" if every else "defaults"
        cfg, acc, run = embedded_run(every_objective=every)
        pair, obj = run.pair, run.objectives
        batch = first_batch(run.data, run.collate, cfg.batch_size)
        say(f"embedded pair, {label} {obj.components()}: batch {cfg.batch_size} x {cfg.max_length} student tokens")
        results[f"embedded, {label}"] = ratio(cfg, run.teacher, pair.student, obj, batch, reps=9)

        if teacher is None: teacher, student = realistic_models()
        attn = "eager" if every else "sdpa"                   # as load_pair chooses
        teacher.config._attn_implementation = student.config._attn_implementation = attn
        s2t = run.teacher.student_of_teacher
        obj_r = Objectives(cfg, model_dims(student), model_dims(teacher), False, s2t)
        small = {k: v[:2] for k, v in batch.items()}
        say(f"reference architectures (random init), {label}: teacher {sum(p.numel() for p in teacher.parameters()) / 1e6:.0f} M "
            f"(vocabulary {teacher.config.vocab_size:,}), student {sum(p.numel() for p in student.parameters()) / 1e6:.0f} M "
            f"(vocabulary {student.config.vocab_size:,}); batch 2 x {cfg.max_length}, {attn} attention")
        results[f"reference shapes, {label}"] = ratio(cfg, full_vocab_teacher(teacher, pair.teacher_tokenizer, s2t), student, obj_r,
                                                      small, reps=5)
    say(f"P1 online step ÷ (teacher forward + CE step): {', '.join(f'{k} {v:.2f}' for k, v in results.items())} (goal <= 1.15)")
