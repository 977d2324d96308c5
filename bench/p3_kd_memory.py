"""P3: peak memory of the cross-tokenizer KD loss (forward and backward, from both models' last hidden states through
their output heads), 2 x 512 tokens, teacher vocabulary 151,936 (hidden 1024) -> student vocabulary 49,152 (hidden 576):
ours (the teacher's top-128 projected a slice of chunk ends at a time, then `head_pass`: the student's logits a slice of
rows at a time, exact-match KL + ULD remainder, recomputed in the backward pass) ÷ a naive implementation that
materializes the student's logits and full fp32 distributions (teacher softmax over 151,936, mapped into the student
vocabulary, KL against the student's full log-softmax). Both compute the gradients of the student's hidden states and
head weight. Each variant runs in a fresh process; memory = peak RSS during the loss minus peak RSS after the shared
setup.

    python bench/p3_kd_memory.py              # goal: ratio <= 0.2
"""
import resource
import subprocess
import sys
from types import SimpleNamespace

import torch

B, L, VT, VS, H, HS, K = 2, 512, 151_936, 49_152, 1024, 576, 128


def setup():
    torch.manual_seed(0)
    head = torch.nn.Linear(H, VT, bias=False).requires_grad_(False)
    h_t = torch.randn(B, L, H)
    s_head = torch.nn.Linear(HS, VS, bias=False)                  # the student's head (trainable)
    h_s = torch.randn(B, L, HS, requires_grad=True)               # the student's last hidden states
    g = torch.Generator().manual_seed(1)
    t_ids = torch.randperm(VT, generator=g)[:40_000]            # 40,000 exact-match pairs, like Qwen3 -> SmolLM
    s_ids = torch.randperm(VS, generator=g)[:40_000]
    s2t = torch.full((VT,), -1, dtype=torch.long); s2t[t_ids] = s_ids
    ends = torch.arange(L).expand(B, L).clone() + 1             # every position ends a chunk (the worst case)
    batch = {"chunk_student_end": ends, "chunk_teacher_end": ends, "chunk_mask": torch.ones(B, L, dtype=torch.bool),
             "teacher_input_ids": torch.zeros(B, L, dtype=torch.long), "teacher_attention_mask": torch.ones(B, L, dtype=torch.long)}
    return torch, head, h_t, (s_head, h_s), s2t, batch


class _Base(torch.nn.Module):
    def __init__(self, h): super().__init__(); self.h, self.layers = h, []
    def forward(self, **kw): return SimpleNamespace(last_hidden_state=self.h, hidden_states=(self.h,))


class _Teacher(torch.nn.Module):
    "Stands in for the teacher after its last layer: `live_signal` only needs the final hidden states and the head."
    def __init__(self, h, head):
        super().__init__(); self.base_model, self.head = _Base(h), head
        self.config = SimpleNamespace()                           # no logit post-processing (output_logits reads it)
        self.eval()
    def get_output_embeddings(self): return self.head


def ours(torch, head, h_t, student, s2t, batch):
    from sad_kaggle.losses import KDRequest, head_pass
    from sad_kaggle.teacher import SignalSpec, StudentOutputs, live_signal
    s_head, h_s = student
    with torch.no_grad():                                       # what Objectives runs: live_signal, then head_pass
        sig = live_signal(_Teacher(h_t, head), batch, SignalSpec(top_k=K), s2t)
    unmatched = torch.ones(VS, dtype=torch.bool); unmatched[s2t[s2t >= 0]] = False
    so = StudentOutputs((h_s,), {}, SimpleNamespace(get_output_embeddings=lambda: s_head, config=SimpleNamespace()))
    cm = batch["chunk_mask"]
    out = head_pass(so, batch, batch["chunk_student_end"] - 1, cm, lm=False,
                    kd=KDRequest(sig, "exact_match_uld", student_unmatched=unmatched))
    out.kd[cm].sum().backward()


def naive(torch, head, h_t, student, s2t, batch):
    s_head, h_s = student
    s_logits = s_head(h_s)                                                  # [B, L, 49,152]
    with torch.no_grad():
        p_t = torch.softmax(head(h_t).float(), -1)                          # [B, L, 151,936] fp32
        m = s2t >= 0
        p_ts = torch.zeros(B, L, VS).index_add_(-1, s2t[m], p_t[..., m])   # teacher mass in the student vocabulary
    s_lp = torch.log_softmax(s_logits.float(), -1)
    (p_ts * (p_ts.clamp(min=1e-20).log() - s_lp)).sum(-1).sum().backward()


def peak_mib() -> float: return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    if len(sys.argv) > 1:                                  # child: one variant
        args = setup(); base = peak_mib()
        {"ours": ours, "naive": naive}[sys.argv[1]](*args)
        print(peak_mib() - base)
        sys.exit(0)
    res = {}
    for v in ("ours", "naive"):
        runs = [float(subprocess.run([sys.executable, __file__, v], capture_output=True, text=True, check=True).stdout.split()[-1])
                for _ in range(3)]
        res[v] = sorted(runs)[1]
        print(f"{v}: peak memory above the setup {res[v]:,.0f} MiB (runs: {', '.join(f'{r:,.0f}' for r in runs)})", flush=True)
    print(f"P3 KD-loss peak memory ours ÷ naive: {res['ours'] / res['naive']:.3f} (goal <= 0.2)")
