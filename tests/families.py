"""Tiny random models of many families and tokenizers of every kind, built offline, for the family matrix.

Models come from their transformers configs (2 layers, width 32); tokenizers are the embedded pair
(byte-level BPE), GPT-2's and Qwen's (byte-level BPE, from `real_tokenizers.py`) and two
SentencePiece models trained here on the embedded corpus with byte fallback: a BPE one (with and
without the dummy prefix space) and a Unigram one. Every model gets a few embedding rows past its tokenizer (padding rows, as
real checkpoints have), so the signal must keep to the real ids.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import torch

from sad_kaggle.align import load_tokenizer
from sad_kaggle.config import embedded_path

ARCHS = ("llama", "qwen2", "qwen3", "qwen3_moe", "mistral", "gemma2", "granite", "cohere", "gpt2", "phi3")
PADDING_ROWS = 11


def model_config(arch: str, vocab_rows: int):
    "A 2-layer, width-32 config of `arch`, with the post-processing of its logits turned up so a skip would show."
    import transformers as T
    small = dict(vocab_size=vocab_rows, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=False)
    if arch == "llama": return T.LlamaConfig(**small)
    if arch == "qwen2": return T.Qwen2Config(**small)
    if arch == "qwen3": return T.Qwen3Config(head_dim=8, **small)
    if arch == "qwen3_moe":
        return T.Qwen3MoeConfig(head_dim=8, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                                decoder_sparse_step=1, mlp_only_layers=[], **small)
    if arch == "mistral": return T.MistralConfig(head_dim=8, **small)
    if arch == "gemma2": return T.Gemma2Config(head_dim=8, final_logit_softcapping=1.0, query_pre_attn_scalar=8, **small)
    if arch == "granite": return T.GraniteConfig(logits_scaling=8.0, **small)
    if arch == "cohere": return T.CohereConfig(logit_scale=4.0, **small)
    if arch == "gpt2": return T.GPT2Config(vocab_size=vocab_rows, n_embd=32, n_layer=2, n_head=4, n_positions=512,
                                           bos_token_id=None, eos_token_id=None)
    if arch == "phi3": return T.Phi3Config(pad_token_id=0, bos_token_id=None, eos_token_id=None, **small)
    raise ValueError(arch)


def tiny_model(arch: str, tokenizer, seed: int = 0, padding: int = PADDING_ROWS):
    "A random `arch` model for `tokenizer` (its real ids plus `padding` rows), eager attention, eval mode."
    from transformers import AutoModelForCausalLM
    torch.manual_seed(seed)
    m = AutoModelForCausalLM.from_config(model_config(arch, len(tokenizer) + padding), attn_implementation="eager")
    with torch.no_grad():                  # random logits of a useful spread, so top-k, tails and caps all matter
        m.get_output_embeddings().weight.normal_(0, 0.5)
    return m.eval()


def corpus_text(max_chars: int = 400_000) -> str:
    return gzip.decompress((embedded_path("sad_kaggle:corpus") / "train.txt.gz").read_bytes()).decode()[:max_chars]


def sentencepiece_dir(dest: Path, model_type: str, vocab_size: int = 1000, dummy_prefix: bool = True,
                      model: Path | None = None) -> Path:
    """A folder transformers loads as a LlamaTokenizer: a SentencePiece model with byte fallback trained on the embedded
    corpus (or `model`, one trained before), with or without the dummy prefix space."""
    import shutil

    import sentencepiece as spm
    dest.mkdir(parents=True, exist_ok=True)
    if model is not None: shutil.copy(model, dest / "tokenizer.model")
    if not (dest / "tokenizer.model").is_file():
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(corpus_text().splitlines()), model_prefix=str(dest / "tokenizer"),
            vocab_size=vocab_size, model_type=model_type, byte_fallback=True, add_dummy_prefix=True,
            character_coverage=0.9995, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2)
    (dest / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
         "add_bos_token": True, "add_eos_token": False, "add_prefix_space": dummy_prefix, "legacy": False}))
    return dest


def tokenizers(root: Path, real: dict | None) -> dict:
    "name -> tokenizer: the embedded pair, three SentencePiece ones (two trained models), and GPT-2's and Qwen3's when `real` is given."
    out = {"embedded-teacher": load_tokenizer("sad_kaggle:tiny-teacher"),
           "embedded-student": load_tokenizer("sad_kaggle:tiny-student"),
           "sp-bpe": load_tokenizer(str(sentencepiece_dir(root / "sp-bpe", "bpe"))),
           "sp-bpe-noprefix": load_tokenizer(str(sentencepiece_dir(root / "sp-bpe-noprefix", "bpe", dummy_prefix=False,
                                                                   model=root / "sp-bpe" / "tokenizer.model"))),
           "sp-unigram": load_tokenizer(str(sentencepiece_dir(root / "sp-unigram", "unigram")))}
    for k in ("gpt2", "qwen3"):
        if real: out[k] = load_tokenizer(str(real[k]))
    return out
