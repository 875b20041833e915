"""Tiny random HF models (no downloads) for patching and eval tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

VOCAB = 260  # 256 byte tokens + a few specials (see byte_tokenizer)

_FAMILIES = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", {}),
    "mistral": ("MistralConfig", "MistralForCausalLM", {"sliding_window": None}),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {}),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {"head_dim": 16}),
}
FAMILIES = tuple(_FAMILIES)


def tiny_config(family: str = "llama", rope_parameters: dict[str, Any] | None = None, **overrides: Any) -> Any:
    import transformers

    cfg_name, _, extra = _FAMILIES[family]
    kw = dict(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64,
        rope_parameters=rope_parameters or {"rope_type": "default", "rope_theta": 10000.0},
        tie_word_embeddings=False,
    )
    kw.update(extra)
    kw.update(overrides)
    return getattr(transformers, cfg_name)(**kw)


def tiny_model(family: str = "llama", rope_parameters: dict[str, Any] | None = None, seed: int = 0, **kw: Any) -> Any:
    """A float32 eval-mode model; the same seed gives the same weights whatever the RoPE parameters."""
    import transformers

    cfg = tiny_config(family, rope_parameters, **kw)
    torch.manual_seed(seed)
    model = getattr(transformers, _FAMILIES[family][1])(cfg).eval()
    return model


def byte_tokenizer() -> Any:
    """A byte-level tokenizer (every byte one token) built offline with `tokenizers`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    vocab["<eos>"] = len(vocab)
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tk.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<eos>")


def save_tiny_dir(path: Path, family: str = "llama", **kw: Any) -> Path:
    """Write a tiny model + byte tokenizer as a local HF model directory."""
    model = tiny_model(family, **kw)
    model.config.eos_token_id = VOCAB - 4  # "<eos>" in byte_tokenizer (256 bytes -> id 256)
    model.save_pretrained(path)
    byte_tokenizer().save_pretrained(path)
    return path
