"""Config dialects (HF, GGUF, llama.cpp, vLLM) and checkpoint/KV conversions."""

from ropekit.interop.hf import from_hf

__all__ = ["from_hf"]
