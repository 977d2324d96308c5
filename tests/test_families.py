"""The family matrix: the teacher signal is right for every model family and tokenizer kind, not only for
byte-level BPE pairs (issue 17).

Tiny random models of ten architectures (Llama, Qwen2, Qwen3, Qwen3-MoE, Mistral, Gemma-2 with logit
softcapping, Granite with logit scaling, Cohere with logit scale, GPT-2, Phi-3), built from their
configs, with tokenizers of each kind: byte-level BPE (the embedded pair, GPT-2's, Qwen3's) and
SentencePiece with byte fallback, with and without a dummy prefix (BPE and Unigram, trained here on
the embedded corpus). For every teacher/student pair: the alignment self-check passes; the map sends the teacher to
the ids the student itself emits; the live signal equals `model(...).logits` (post-processing
included) over the real ids and sums to 1; one step of every objective is finite; and a student that
*is* its teacher gets KD ~ 0. Pairs with Qwen3's 151,669-id tokenizer are `slow`.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from families import PADDING_ROWS, corpus_text, tiny_model, tokenizers  # noqa: E402

from sad_kaggle.align import align_report, encode_with_offsets, token_bytes, vocab_map  # noqa: E402
from sad_kaggle.config import DistillConfig, with_every_objective  # noqa: E402
from sad_kaggle.data import WINDOW_COLUMNS, DualCollator, WindowMaker  # noqa: E402
from sad_kaggle.losses import OBJECTIVES, Objectives, combine  # noqa: E402
from sad_kaggle.teacher import (LiveTeacher, SignalSpec, chunk_sums, gather_positions, model_dims,  # noqa: E402
                                student_forward)

# (teacher architecture, teacher tokenizer, student architecture, student tokenizer); the student always has
# 3 more padding rows than the teacher, so a pair with one tokenizer has two vocabulary sizes
PAIRS = [
    ("qwen3_moe", "embedded-teacher", "llama", "sp-bpe"),
    ("gemma2", "sp-bpe", "llama", "embedded-student"),
    ("granite", "embedded-teacher", "mistral", "sp-unigram"),
    ("cohere", "sp-unigram", "gpt2", "embedded-student"),
    ("llama", "sp-bpe", "gemma2", "sp-unigram"),
    ("phi3", "sp-bpe", "phi3", "sp-bpe"),
    ("mistral", "embedded-student", "qwen2", "embedded-student"),
    ("gpt2", "gpt2", "granite", "sp-bpe"),
    ("qwen3", "sp-bpe-noprefix", "cohere", "sp-bpe"),
    ("gpt2", "embedded-teacher", "qwen2", "sp-bpe-noprefix"),
    ("qwen3_moe", "qwen3", "llama", "gpt2"),
    ("qwen2", "qwen3", "qwen3", "qwen3"),
    ("granite", "qwen3", "phi3", "sp-unigram"),
]
MODELS = sorted({p[:2] for p in PAIRS} | {p[2:] for p in PAIRS})


def marked(cases):
    "Cases with Qwen3's 151,669-id tokenizer are `slow`."
    return [pytest.param(*c, marks=pytest.mark.slow) if "qwen3" in c else c for c in cases]
EXTRA = "Café déjà vu — naïve 😀 ½ price: 1234567 items, 3.14159 « quoted » ẞ ﬁ.\n"


@pytest.fixture(scope="module")
def toks(tmp_path_factory) -> dict:
    import real_tokenizers
    return tokenizers(tmp_path_factory.mktemp("tokenizers"), real_tokenizers.prepare())


@pytest.fixture(scope="module")
def docs() -> list[str]:
    lines = [l for l in corpus_text(40_000).splitlines() if l.strip()]
    return [EXTRA + "\n".join(lines[i:i + 4]) for i in range(0, 24, 4)]


def batch_of(ttok, stok, docs, max_length: int = 48, rows: int = 3) -> dict:
    cols = WindowMaker(ttok, stok, max_length)({"text": docs})
    pick = [{k: cols[k][i] for k in WINDOW_COLUMNS} for i in range(rows)]
    return DualCollator(stok.pad_token_id, ttok.pad_token_id)(pick)


def config(**kw) -> DistillConfig:
    return DistillConfig.from_preset("tiny-cpu", **{"kd_top_k": 16, "temperature": 2.0, **kw})


@pytest.mark.parametrize("t_arch,t_tok,s_arch,s_tok", marked(PAIRS))
def test_a_pair_gets_the_right_signal_and_trains(toks, docs, t_arch, t_tok, s_arch, s_tok):
    ttok, stok = toks[t_tok], toks[s_tok]
    teacher, student = tiny_model(t_arch, ttok, seed=0), tiny_model(s_arch, stok, seed=1, padding=PADDING_ROWS + 3)

    # the alignment's self-check on the held-out corpus
    rep = align_report(t_tok, s_tok, max_bytes=40_000, teacher_tok=ttok, student_tok=stok)
    assert rep["self_check"]["passed"], rep["self_check"]["error"]

    # the map sends every teacher id to the id the student itself emits for those bytes
    vm = vocab_map(ttok, stok)
    s_of_t, tb, sb = vm.student_of_teacher(), token_bytes(ttok), token_bytes(stok)
    teacher_ids_of = {}
    for t, b in enumerate(tb):
        if b: teacher_ids_of.setdefault(b, []).append(t)
    emitted = set(encode_with_offsets(stok, "\n\n".join(docs)).ids.tolist())
    wrong = [(t, s) for s in emitted for t in teacher_ids_of.get(sb[s], []) if s_of_t[t] != s]
    assert not wrong, f"teacher ids mapped away from the id the student emits: {wrong[:5]}"

    # the live signal is the teacher's own output (post-processing included), over its real ids, summing to 1
    batch = batch_of(ttok, stok, docs)
    cm = batch["chunk_mask"]
    src = LiveTeacher(teacher, ttok, torch.as_tensor(s_of_t))
    sig = src.signal(batch, "train", SignalSpec(top_k=16, temperature=2.0, chunk_likelihood=True))
    with torch.no_grad():
        logits = teacher(input_ids=batch["teacher_input_ids"], attention_mask=batch["teacher_attention_mask"]).logits
    ref = torch.log_softmax(logits[..., :len(ttok)].float(), -1)
    at_ends = torch.log_softmax(gather_positions(logits[..., :len(ttok)].float(), batch["chunk_teacher_end"] - 1) / 2.0, -1)
    torch.testing.assert_close(sig.topk_logprobs[cm], at_ends.topk(16, -1).values[cm], atol=1e-4, rtol=1e-4)
    mass = sig.topk_logprobs.exp().sum(-1) + sig.tail_logmass.exp()
    torch.testing.assert_close(mass[cm], torch.ones_like(mass[cm]), atol=1e-5, rtol=0)
    assert (sig.topk_ids < len(ttok)).all()
    nxt = torch.nn.functional.pad(batch["teacher_input_ids"][:, 1:], (0, 1))
    ref_ll, valid = chunk_sums(ref.gather(-1, nxt[..., None])[..., 0], batch["chunk_teacher_start"],
                               batch["chunk_teacher_end"], cm)
    torch.testing.assert_close(sig.chunk_logprob[valid], ref_ll[valid], atol=1e-4, rtol=1e-4)
    full = src.signal(batch, "train", SignalSpec(top_k=None)).full_logprobs
    assert full.shape[-1] == len(ttok)
    torch.testing.assert_close(full.logsumexp(-1)[cm], torch.zeros(int(cm.sum())), atol=1e-4, rtol=0)

    # one step of every objective (the extras are off by default; their trial weights turn them on)
    same = ttok.backend_tokenizer.to_str() == stok.backend_tokenizer.to_str()
    obj = Objectives(with_every_objective(config()), model_dims(student), src.dims, same, torch.as_tensor(s_of_t),
                     student_vocab=len(stok))
    expected = {"lm", "kd", "feature", "attention", "layerwise", "contrastive"} | ({"router"} if src.dims.moe_layers else set())
    assert set(obj.components()) == expected
    sig = src.signal(batch, "train", obj.spec)
    sums, _ = obj(batch, student_forward(student, batch, [s for s, _ in obj.att_pairs]), sig)
    total, raw, _ = combine(sums, obj.counts(batch), {c: 1.0 for c in OBJECTIVES})
    total.backward()
    assert all(np.isfinite(float(v.detach())) for v in raw.values()), raw
    assert all(torch.isfinite(p.grad).all() for p in [*student.parameters(), *obj.parameters()] if p.grad is not None)
    assert float(raw["kd"].detach()) > 0
    if same:    # the full-vocabulary KD of one tokenizer: teacher and student rows differ, the real ids do not
        full_obj = Objectives(config(kd_top_k=None), model_dims(student), src.dims, True, student_vocab=len(stok))
        with torch.no_grad():
            so = student_forward(student, batch, [s for s, _ in full_obj.att_pairs])
            sig = src.signal(batch, "train", full_obj.spec)
            sums, _ = full_obj(batch, so, sig)
            s_lp = torch.log_softmax(gather_positions(so.logits[..., :len(stok)], batch["chunk_student_end"] - 1) / 2.0, -1)
            t_lp = sig.full_logprobs
            want = (t_lp.exp() * (t_lp - s_lp)).sum(-1)[cm].sum() * 4.0        # forward KL over the real ids, x T^2
        torch.testing.assert_close(sums["kd"], want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("arch,tok", marked(MODELS))
def test_a_student_that_is_its_teacher_gets_no_kd(toks, docs, arch, tok):
    tokenizer = toks[tok]
    model = tiny_model(arch, tokenizer, seed=0)
    batch = batch_of(tokenizer, tokenizer, docs)
    s_of_t = torch.as_tensor(vocab_map(tokenizer, tokenizer).student_of_teacher())
    src = LiveTeacher(model, tokenizer, s_of_t)
    methods = ["auto"] + (["exact_match_uld"] if (s_of_t == torch.arange(len(s_of_t))).all() else [])
    for method in methods:
        obj = Objectives(config(kd_method=method, alpha_feature=0.0, alpha_attention=0.0, alpha_layerwise=0.0,
                                alpha_contrastive=0.0, alpha_router=0.0),
                         model_dims(model), src.dims, True, s_of_t, student_vocab=len(tokenizer))
        with torch.no_grad():
            sums, _ = obj(batch, student_forward(model, batch), src.signal(batch, "train", obj.spec))
        kd = float(sums["kd"]) / obj.counts(batch)["kd"]
        assert abs(kd) < 1e-5, (method, kd)


@pytest.mark.slow
def test_sad_train_runs_a_sentencepiece_pair_of_other_families_end_to_end(toks, tmp_path):
    # Gemma-2 (softcapped logits) with a SentencePiece BPE tokenizer teaches a Phi-3 with a SentencePiece Unigram
    # one: models and tokenizers from directories, every objective the pair supports, evaluation on the same bytes
    import json

    from conftest import run_cli
    dirs = {}
    for role, arch, tok in (("teacher", "gemma2", "sp-bpe"), ("student", "phi3", "sp-unigram")):
        dirs[role] = tmp_path / role
        tiny_model(arch, toks[tok], seed=0).save_pretrained(dirs[role])
        toks[tok].save_pretrained(dirs[role])
    out = tmp_path / "run"
    r = run_cli("sad-train", "--preset", "tiny-cpu", "--max-steps", "4", "--output-dir", out,
                "--set", f"teacher_model={dirs['teacher']}", "--set", f"student_model={dirs['student']}",
                "--set", "dataset_subset_size=64", "--set", "eval_subset_size=8", "--set", "eval_steps=4",
                "--set", "logging_steps=1", "--set", "max_length=64", timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    recs = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines() if l.strip()]
    train = [x for x in recs if x["kind"] == "train"]
    assert len(train) == 4 and not any(x.get("skipped") for x in train)
    assert all(np.isfinite(x["raw_kd"]) and np.isfinite(x["raw_lm"]) for x in train)
    ev = [x for x in recs if x["kind"] == "eval"][-1]
    assert 0 < ev["eval_bits_per_byte"] < 50 and 0 < ev["eval_teacher_bits_per_byte"] < 50
