"""P5: alignment throughput, ours (`encode_with_offsets` + `align_chunks`, vectorized numpy, with and without the
byte self-check) vs TRL's GOLD byte-offset alignment (`trl.experimental.utils.encode_with_byte_offsets` +
`ULDLoss._align_by_byte_offsets`, a Python walk), on the same texts and tokenizers, side by side in one run: the
embedded corpus's held-out chapters, windows of ~2,000 characters, embedded pair.

    pip install trl && python bench/p5_alignment.py        # goal: ours >= 2x TRL's throughput
"""
import gzip
import sys

from _common import ROOT, median_seconds, say

from sad_kaggle.align import align_chunks, encode_with_offsets, load_tokenizer, token_bytes

try:
    from trl.experimental.gold.gold_trainer import ULDLoss
    from trl.experimental.utils import encode_with_byte_offsets
except ImportError as e:
    sys.exit(f"P5 needs TRL's GOLD alignment (trl.experimental.gold): pip install trl  ({e})")

if __name__ == "__main__":
    text = gzip.decompress((ROOT / "sad_kaggle/assets/corpus/eval.txt.gz").read_bytes()).decode()
    texts = [text[i:i + 2000] for i in range(0, len(text), 2000)]
    ttok, stok = load_tokenizer("sad_kaggle:tiny-teacher"), load_tokenizer("sad_kaggle:tiny-student")
    tb, sb = token_bytes(ttok), token_bytes(stok)
    n_bytes = sum(len(t.encode()) for t in texts)

    # alignment alone, on tokenizations made beforehand (the tokenizers' Rust code is the same on both sides)
    t_ours = [encode_with_offsets(ttok, t) for t in texts]; s_ours = [encode_with_offsets(stok, t) for t in texts]
    t_trl = [list(o) for _, o in encode_with_byte_offsets(ttok.backend_tokenizer, texts, add_special_tokens=False)]
    s_trl = [list(o) for _, o in encode_with_byte_offsets(stok.backend_tokenizer, texts, add_special_tokens=False)]

    def align_ours(check):
        def run():
            for t, te, se in zip(texts, t_ours, s_ours):
                align_chunks(t, te, se, tb if check else None, sb if check else None, check=check)
        return run

    def align_trl():
        for so, to in zip(s_trl, t_trl): ULDLoss._align_by_byte_offsets(so, to)

    # end to end: tokenize with byte offsets, then align
    def e2e_ours():
        for t in texts: align_chunks(t, encode_with_offsets(ttok, t), encode_with_offsets(stok, t), tb, sb)

    def e2e_trl():
        t_enc = encode_with_byte_offsets(ttok.backend_tokenizer, texts, add_special_tokens=False)
        s_enc = encode_with_byte_offsets(stok.backend_tokenizer, texts, add_special_tokens=False)
        for (_, t_off), (_, s_off) in zip(t_enc, s_enc): ULDLoss._align_by_byte_offsets(list(s_off), list(t_off))

    # the same boundaries: every chunk end of ours is a group end of TRL's
    t = texts[3]
    c = align_chunks(t, encode_with_offsets(ttok, t), encode_with_offsets(stok, t))
    (_, t_off), = encode_with_byte_offsets(ttok.backend_tokenizer, [t], add_special_tokens=False)
    (_, s_off), = encode_with_byte_offsets(stok.backend_tokenizer, [t], add_special_tokens=False)
    s_groups, _ = ULDLoss._align_by_byte_offsets(list(s_off), list(t_off))
    say(f"window 3: ours {len(c.student_end)} chunks, TRL {len(s_groups)} groups")

    res = {}
    for name, fn in (("align: ours (self-checked)", align_ours(True)), ("align: ours (no check)", align_ours(False)),
                     ("align: TRL GOLD", align_trl), ("tokenize + align: ours (self-checked)", e2e_ours),
                     ("tokenize + align: TRL GOLD", e2e_trl)):
        s = median_seconds(fn, reps=5, warmup=1)
        res[name] = n_bytes / s / 1e6
        say(f"{name}: {res[name]:.2f} MB of text per second ({len(texts)} windows, {n_bytes:,} bytes, median of 5)")
    e2e = res["tokenize + align: ours (self-checked)"] / res["tokenize + align: TRL GOLD"]
    say(f"P5 alignment throughput ours ÷ TRL GOLD: {res['align: ours (self-checked)'] / res['align: TRL GOLD']:.2f} "
        f"self-checked, {res['align: ours (no check)'] / res['align: TRL GOLD']:.2f} unchecked; with tokenization "
        f"{e2e:.2f} (goal >= 2)")
