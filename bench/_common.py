"""Shared pieces of the benchmarks: timing, the embedded pair, realistic shapes. Benchmarks, not tests: each script
prints its measurements and, as its last line, the ratio it exists for."""
import os
import statistics
import sys
import time
from pathlib import Path

# glibc hands every freed block above 32 MB back to the kernel, so each step page-faults its large tensors afresh:
# on this VM that made single steps vary by ±30 % and ratios by ±0.2. Timed benchmarks run with the heap kept (the
# process restarts itself once with these settings); both sides get faster and the ratios stable. P3 (memory) does not.
_HEAP = {"MALLOC_MMAP_THRESHOLD_": str(2**32), "MALLOC_TRIM_THRESHOLD_": str(2**36), "MALLOC_TOP_PAD_": str(2**30)}
if any(os.environ.get(k) != v for k, v in _HEAP.items()):
    os.execve(sys.executable, [sys.executable] + sys.argv, {**os.environ, **_HEAP})

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch

from sad_kaggle.config import DistillConfig, shipped_model_config

ROOT = Path(__file__).resolve().parent.parent


def median_seconds(fn, reps: int = 7, warmup: int = 2) -> float:
    "Median wall time of `fn()` over `reps` runs after `warmup` runs."
    for _ in range(warmup): fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter(); fn(); times.append(time.perf_counter() - t0)
    return statistics.median(times)


def embedded_run(every_objective: bool = True, **overrides):
    """(config, accelerator, `RunSetup`): the tiny-cpu preset's models, windows, objectives, collator and teacher source;
    every objective on unless `every_objective=False` (the defaults are LM + KD), then `overrides`."""
    from accelerate import Accelerator
    from sad_kaggle.config import with_every_objective
    from sad_kaggle.run import setup_run
    cfg = DistillConfig.from_preset("tiny-cpu", dataset_subset_size=256, eval_subset_size=16)
    cfg = (with_every_objective(cfg) if every_objective else cfg).replace(**overrides)
    acc = Accelerator(cpu=True)
    return cfg, acc, setup_run(cfg, acc)


def realistic_models(teacher_layers: int | None = None, student_vocab: int | None = None):
    """Random-init models of the reference architectures from their shipped configs: the Qwen3-MoE teacher
    (vocabulary 151,936, hidden 1024) and the SmolLM-135M student (vocabulary 49,152 or `student_vocab`, 30 layers,
    hidden 576)."""
    from transformers import AutoConfig, AutoModelForCausalLM
    t_cfg = AutoConfig.from_pretrained(shipped_model_config("huihui-ai/Huihui-MoE-1B-A0.6B").parent)
    if teacher_layers: t_cfg.num_hidden_layers = teacher_layers
    s_cfg = AutoConfig.from_pretrained(shipped_model_config("HuggingFaceTB/SmolLM-135M").parent)
    if student_vocab: s_cfg.vocab_size = student_vocab
    torch.manual_seed(0)
    # fp32, as the trainer holds them on a CPU (from_config would take the configs' bfloat16)
    teacher = AutoModelForCausalLM.from_config(t_cfg, dtype=torch.float32).eval()
    for p in teacher.parameters(): p.requires_grad_(False)
    student = AutoModelForCausalLM.from_config(s_cfg, dtype=torch.float32)
    return teacher, student


def say(*a):
    print(*a, flush=True)


def first_batch(data, collate, n: int) -> dict:
    "The first `n` training windows as a batch, with the window indices a teacher cache needs."
    return {**collate([data.train[i] for i in range(n)]), "window_index": torch.arange(n)}


def ce_step(student, batch, opt):
    "One plain cross-entropy optimizer step of the student (the baseline of P1 and P2)."
    out = student(input_ids=batch["student_input_ids"], attention_mask=batch["student_attention_mask"], labels=batch["labels"])
    out.loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)


def alternating(fns: dict, reps: int, warmup: int = 1) -> dict:
    """Median seconds of each function in `fns` {label: fn}, run in turn (a, b, c, a, b, c, ...) so that a machine
    whose speed drifts slows them alike."""
    for _ in range(warmup):
        for fn in fns.values(): fn()
    times = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            t0 = time.perf_counter(); fn(); times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def side_by_side(label_a: str, fa, label_b: str, fb, reps: int, warmup: int = 2) -> float:
    """Median times of `fa` and `fb` measured in this run, alternating a, b, a, b, ... so that a machine whose speed
    drifts slows both alike; prints both and returns time(a) ÷ time(b)."""
    t = alternating({label_a: fa, label_b: fb}, reps, warmup)
    a, b = t[label_a], t[label_b]
    say(f"  {label_a} {a * 1000:.0f} ms, {label_b} {b * 1000:.0f} ms")
    return a / b


def full_vocab_teacher(model, tokenizer, student_of_teacher):
    """A `LiveTeacher` of a reference-shaped teacher whose log-softmax and top-k run over all of its vocabulary rows
    (151,936): with the embedded tokenizer it would read only that tokenizer's 4,096 ids and understate their cost."""
    from sad_kaggle.teacher import LiveTeacher
    return LiveTeacher(model, tokenizer, student_of_teacher, vocab=model.config.vocab_size)
