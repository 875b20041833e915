"""Passkey retrieval (Mohtashami & Jaggi 2023): a 5-digit key hidden at a given depth in filler text.

Prompt (newline-joined, as in ``epfml/landmark-attention`` ``run_test.py``): the task description,
repeated filler, ``"The pass key is {K}. Remember it. {K} is the pass key."``, more filler, and
``"What is the pass key? The pass key is"``, after the tokenizer's own leading special tokens (Gemma's
``<bos>``; none for SmolLM2). The filler is sized in tokens so the prompt is as close to
the requested length as possible without exceeding it; ``depth`` is the fraction of the filler placed
before the key. Greedy decoding of at most 10 tokens; a trial passes when the first integer generated
equals the key. Keys come from a seeded RNG per (length, depth, trial), so every method sees the same
prompts.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

import torch

from ropekit.eval.text import special_prefix

__all__ = ["FILLER", "PasskeyPrompt", "build_prompt", "greedy_answer", "passkey_trial"]

TASK = (
    "There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. "
    "I will quiz you about the important information there."
)
FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
KEY_LINE = "The pass key is {key}. Remember it. {key} is the pass key."
QUESTION = "What is the pass key? The pass key is"
MAX_NEW_TOKENS = 10


@dataclass(frozen=True)
class PasskeyPrompt:
    ids: torch.Tensor  # (n,) int64 prompt tokens, n <= the requested length
    key: int
    depth: float  # fraction of filler before the key
    key_token_pos: int  # token index where the key line starts (approximate for reporting)


def _text(prefix_reps: int, suffix_reps: int, key: int) -> str:
    return "\n".join(
        [TASK, " ".join([FILLER] * prefix_reps), KEY_LINE.format(key=key), " ".join([FILLER] * suffix_reps), QUESTION]
    )


def _n_tokens(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def passkey_key(length: int, depth: float, trial: int) -> int:
    """The deterministic 5-digit key of one (length, depth, trial) cell."""
    return random.Random(f"passkey-{length}-{depth:.4f}-{trial}").randint(10000, 99999)


def build_prompt(tokenizer: Any, length: int, depth: float, key: int) -> PasskeyPrompt:
    """Token ids of a passkey prompt of at most ``length`` tokens with the key at ``depth`` (0..1).

    >>> p = build_prompt(tok, 4096, 0.5, 12345)   # doctest: +SKIP
    >>> p.ids.numel() <= 4096                      # doctest: +SKIP
    True
    """
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth must be in [0, 1], got {depth}.")
    head = special_prefix(tokenizer)  # e.g. Gemma's <bos>, which it needs; [] for SmolLM2
    budget = length - len(head)
    fixed = _n_tokens(tokenizer, _text(0, 0, key))
    per_rep = _n_tokens(tokenizer, " ".join([FILLER] * 64)) / 64
    total = max(0, int((budget - fixed) / per_rep))
    while True:
        pre = round(depth * total)
        ids = head + tokenizer(_text(pre, total - pre, key), add_special_tokens=False)["input_ids"]
        if len(ids) <= length or total == 0:
            break
        total -= 1
    if len(ids) > length:
        raise ValueError(f"length={length} is too short for a passkey prompt (needs at least {len(ids)} tokens).")
    key_pos = len(head) + _n_tokens(tokenizer, "\n".join([TASK, " ".join([FILLER] * pre)]))
    return PasskeyPrompt(torch.tensor(ids, dtype=torch.long), key, depth, key_pos)


@torch.no_grad()
def greedy_answer(model: Any, tokenizer: Any, ids: torch.Tensor, max_new_tokens: int = MAX_NEW_TOKENS) -> str:
    """Greedy continuation (KV cache; only last-position logits are formed), stopped once an integer ends."""
    device = next(model.parameters()).device
    x = ids.to(device).unsqueeze(0)
    out = model(input_ids=x, use_cache=True, logits_to_keep=1)
    cache, generated = out.past_key_values, []
    eos = tokenizer.eos_token_id
    for step in range(max_new_tokens):
        nxt = int(out.logits[0, -1].argmax())
        if nxt == eos:
            break
        generated.append(nxt)
        text = tokenizer.decode(generated)
        if re.search(r"\d+\D", text):  # the first integer is complete
            break
        if step + 1 < max_new_tokens:
            pos = torch.tensor([[x.shape[1] + len(generated) - 1]], device=device)
            out = model(
                input_ids=torch.tensor([[nxt]], device=device), past_key_values=cache, use_cache=True,
                position_ids=pos, logits_to_keep=1,
            )
            cache = out.past_key_values
    return tokenizer.decode(generated)


def score_answer(answer: str, key: int) -> bool:
    """True when the first integer in ``answer`` is ``key``."""
    m = re.search(r"\d+", answer)
    return m is not None and int(m.group()) == key


def passkey_trial(model: Any, tokenizer: Any, length: int, depth: float, trial: int) -> dict[str, Any]:
    """Run one trial; a JSON-ready record ``{"key", "answer", "correct", "tokens"}``."""
    key = passkey_key(length, depth, trial)
    prompt = build_prompt(tokenizer, length, depth, key)
    answer = greedy_answer(model, tokenizer, prompt.ids)
    return {"key": key, "answer": answer, "correct": score_answer(answer, key), "tokens": int(prompt.ids.numel())}
