"""P1: a full-objective optimizer step with the live teacher ÷ (teacher forward + plain student CE step), measured side
by side in one run, on the embedded pair and on the reference architectures (random init, CPU).

    python bench/p1_online_step.py            # goal: ratio <= 1.15
"""
import torch
from _common import ce_step, embedded_run, first_batch, realistic_models, say, side_by_side

from sad_kaggle.config import curriculum_weights
from sad_kaggle.losses import Objectives, combine
from sad_kaggle.teacher import LiveTeacher, model_dims, student_forward


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

    return side_by_side("full-objective step", full_step, "teacher forward + CE step", baseline, reps)


if __name__ == "__main__":
    torch.manual_seed(0)
    cfg, acc, run = embedded_run()
    pair, obj = run.pair, run.objectives
    batch = first_batch(run.data, run.collate, cfg.batch_size)
    say(f"embedded pair: batch {cfg.batch_size} x {cfg.max_length} student tokens, components {obj.components()}")
    r_tiny = ratio(cfg, run.teacher, pair.student, obj, batch, reps=7)
    say(f"  ratio {r_tiny:.3f}")

    teacher, student = realistic_models()
    teacher.config._attn_implementation = student.config._attn_implementation = "eager"   # attention maps
    s2t = run.teacher.student_of_teacher
    obj_r = Objectives(cfg, model_dims(student), model_dims(teacher), False, s2t)
    small = {k: v[:2] for k, v in batch.items()}
    say(f"reference architectures (random init): teacher {sum(p.numel() for p in teacher.parameters()) / 1e6:.0f} M "
        f"(vocabulary {teacher.config.vocab_size:,}), student {sum(p.numel() for p in student.parameters()) / 1e6:.0f} M "
        f"(vocabulary {student.config.vocab_size:,}); batch 2 x {cfg.max_length}")
    r_ref = ratio(cfg, LiveTeacher(teacher, pair.teacher_tokenizer, s2t), student, obj_r, small, reps=5)
    say(f"  ratio {r_ref:.3f}")
    say(f"P1 online step ÷ (teacher forward + CE step): embedded {r_tiny:.2f}, reference shapes {r_ref:.2f} (goal <= 1.15)")
