"""Passkey retrieval (Mohtashami & Jaggi 2023): a 5-digit key hidden at a given depth in filler text.

Prompt (newline-joined, as in ``epfml/landmark-attention`` ``run_test.py``): the task description,
repeated filler, ``"The pass key is {K}. Remember it. {K} is the pass key."``, more filler, and
``"What is the pass key? The pass key is"``, after the tokenizer's own leading special tokens (Gemma's
``<bos>``; none for SmolLM2). The filler is sized in tokens so the prompt is as close to
the requested length as possible without exceeding it; ``depth`` is the fraction of the filler placed
before the key. Greedy decoding of at most 10 tokens; a trial passes when the first integer generated
equals the key. Keys come from a seeded RNG per (length, depth, trial), so every method sees the same
prompts.

Besides greedy correctness every trial gets a continuous score: the log-probability (nats) of the key's
digit tokens under teacher forcing, i.e. of the tokens of ``" {key}"`` after the question, summed over
the tokens that hold digits (SmolLM2 writes ``" 12345"`` as ``" "`` + 5 digit tokens; the space is fed but
not scored) and divided by the 5 digits.

Trials of one (method, length, depth) share everything before the key line (task, filler), so
:func:`passkey_trials` prefills that prefix once and gives every trial a copy of its KV cache; each trial
then runs the key line, the rest of the filler and the question from that cache. For a causal model this
is the same computation as one forward over the whole prompt (equal to fp32 rounding, tested). Methods
whose frequencies follow the current length (``dynamic``, ``dynamic-yarn``) are the exception: the prefix
is then rotated and attended at its own length and the rest at the full length, a two-chunk prefill, as
Hugging Face's dynamic RoPE does for every token added to a cache; ``reuse=False`` prefills every trial's
whole prompt in one forward instead.
"""

from __future__ import annotations

import copy
import random
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ropekit.eval.text import special_prefix
from ropekit.patching.verify import cache_kwargs, returned_cache

__all__ = [
    "FILLER", "PasskeyPrompt", "answer_ids", "build_prompt", "greedy_answer", "key_logprob", "passkey_key",
    "passkey_trial", "passkey_trials", "score_answer",
]

TASK = (
    "There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. "
    "I will quiz you about the important information there."
)
FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
KEY_LINE = "The pass key is {key}. Remember it. {key} is the pass key."
QUESTION = "What is the pass key? The pass key is"
MAX_NEW_TOKENS = 10


@dataclass(frozen=True, kw_only=True)
class PasskeyPrompt:
    ids: torch.Tensor  # (n,) int64 prompt tokens, n <= the requested length
    key: int
    depth: float  # fraction of filler before the key
    key_token_pos: int  # tokens before the key line: the prefix every key at this (length, depth) shares
    answer: torch.Tensor  # (k,) int64 tokens of " {key}" as they follow the question
    digits: torch.Tensor  # (k,) bool: which answer tokens hold digits (the scored ones)


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
    key_pos = len(head) + _n_tokens(tokenizer, "\n".join([TASK, " ".join([FILLER] * pre)]) + "\n")
    answer = answer_ids(tokenizer, key)
    digits = torch.tensor([any(c.isdigit() for c in tokenizer.decode([t])) for t in answer.tolist()])
    return PasskeyPrompt(ids=torch.tensor(ids, dtype=torch.long), key=key, depth=depth, key_token_pos=key_pos,
                         answer=answer, digits=digits)


def answer_ids(tokenizer: Any, key: int) -> torch.Tensor:
    """Tokens of ``" {key}"`` as the tokenizer writes them right after the question (context-aware).

    >>> answer_ids(tok, 12345).tolist()           # doctest: +SKIP
    [216, 33, 34, 35, 36, 37]
    """
    q = tokenizer(QUESTION, add_special_tokens=False)["input_ids"]
    full = tokenizer(f"{QUESTION} {key}", add_special_tokens=False)["input_ids"]
    tail = full[len(q):] if full[: len(q)] == q else tokenizer(f" {key}", add_special_tokens=False)["input_ids"]
    return torch.tensor(tail, dtype=torch.long)


def _step(model: Any, token: int, cache: Any, pos: int) -> Any:
    device = next(model.parameters()).device
    return model(input_ids=torch.tensor([[token]], device=device), **cache_kwargs(model, cache), use_cache=True,
                 position_ids=torch.tensor([[pos]], device=device), logits_to_keep=1)


def _greedy(model: Any, tokenizer: Any, logits: torch.Tensor, cache: Any, n: int, max_new_tokens: int) -> str:
    """Greedy continuation from the prompt's last ``logits`` and its ``cache`` (``n`` prompt tokens)."""
    generated: list[int] = []
    eos = tokenizer.eos_token_id
    for step in range(max_new_tokens):
        nxt = int(logits.argmax())
        if nxt == eos:
            break
        generated.append(nxt)
        if re.search(r"\d+\D", tokenizer.decode(generated)):  # the first integer is complete
            break
        if step + 1 < max_new_tokens:
            out = _step(model, nxt, cache, n + step)
            logits, cache = out.logits[0, -1], returned_cache(out)
    return tokenizer.decode(generated)


@torch.no_grad()
def greedy_answer(model: Any, tokenizer: Any, ids: torch.Tensor, max_new_tokens: int = MAX_NEW_TOKENS) -> str:
    """Greedy continuation (KV cache; only last-position logits are formed), stopped once an integer ends."""
    device = next(model.parameters()).device
    out = model(input_ids=ids.to(device).unsqueeze(0), use_cache=True, logits_to_keep=1)
    return _greedy(model, tokenizer, out.logits[0, -1], returned_cache(out), ids.numel(), max_new_tokens)


def score_answer(answer: str, key: int) -> bool:
    """True when the first integer in ``answer`` is ``key``."""
    m = re.search(r"\d+", answer)
    return m is not None and int(m.group()) == key


@torch.no_grad()
def _teacher(model: Any, prompt: PasskeyPrompt, logits: torch.Tensor, cache: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward of all answer tokens on ``cache`` (extended in place): ``(logp, rows)``.

    ``logp``: float64 log-probability of each answer token (the first from ``logits``, the prompt's last
    position); ``rows``: ``(k, vocab)`` logits after each answer token (the greedy path reuses them).
    """
    device = next(model.parameters()).device
    k, n = prompt.answer.numel(), prompt.ids.numel()
    out = model(input_ids=prompt.answer.to(device)[None], **cache_kwargs(model, cache), use_cache=True,
                position_ids=torch.arange(n, n + k, device=device)[None])
    rows = out.logits[0].float()
    logp = torch.log_softmax(torch.cat([logits.float()[None], rows[:-1]]), dim=-1).double().cpu()
    return logp[torch.arange(k), prompt.answer], rows


@torch.no_grad()
def key_logprob(model: Any, prompt: PasskeyPrompt, logits: torch.Tensor, cache: Any) -> torch.Tensor:
    """Teacher-forced log-probabilities (nats, float64, one per answer token) of ``prompt.answer``.

    ``logits``: the prompt's last-position logits; ``cache``: its KV cache (left untouched: a copy is extended).

    >>> lp = key_logprob(model, prompt, out.logits[0, -1], returned_cache(out))   # doctest: +SKIP
    >>> float(lp[prompt.digits].sum())                                            # doctest: +SKIP
    -0.27
    """
    return _teacher(model, prompt, logits, copy.deepcopy(cache))[0]


def _greedy_on_path(model: Any, tokenizer: Any, prompt: PasskeyPrompt, logits: torch.Tensor, rows: torch.Tensor,
                    cache: Any, pristine: Any) -> str:
    """:func:`_greedy` that reads the teacher-forced ``rows`` while greedy picks the answer's own tokens.

    ``cache`` holds prompt + answer (after :func:`_teacher`), ``pristine`` the prompt only. Greedy leaving
    the answer before its end restarts from ``pristine`` (the plain decode); after its end it goes on from
    ``cache``, which then holds exactly the tokens generated so far.
    """
    n, k, eos = prompt.ids.numel(), prompt.answer.numel(), tokenizer.eos_token_id
    generated: list[int] = []
    step_logits = logits
    for step in range(MAX_NEW_TOKENS):
        nxt = int(step_logits.argmax())
        if nxt == eos:
            break
        generated.append(nxt)
        if re.search(r"\d+\D", tokenizer.decode(generated)) or step + 1 == MAX_NEW_TOKENS:
            break
        if step < k and nxt == int(prompt.answer[step]):
            step_logits = rows[step]
        elif step < k:
            return _greedy(model, tokenizer, logits, pristine, n, MAX_NEW_TOKENS)
        else:
            out = _step(model, nxt, cache, n + step)
            step_logits, cache = out.logits[0, -1], returned_cache(out)
    return tokenizer.decode(generated)


@torch.no_grad()
def _prefill(model: Any, ids: torch.Tensor, start: int, cache: Any) -> Any:
    device = next(model.parameters()).device
    pos = torch.arange(start, start + ids.numel(), device=device)[None]
    return model(input_ids=ids.to(device)[None], **cache_kwargs(model, cache), use_cache=True, position_ids=pos,
                 logits_to_keep=1)


@torch.no_grad()
def _trial(model: Any, tokenizer: Any, prompt: PasskeyPrompt, prefix: tuple[torch.Tensor, Any] | None) -> dict:
    p = prompt.key_token_pos
    shared = prefix is not None and torch.equal(prompt.ids[:p], prefix[0])
    cache = copy.deepcopy(prefix[1]) if shared else None
    start = p if shared else 0
    out = _prefill(model, prompt.ids[start:], start, cache)
    logits, cache = out.logits[0, -1], returned_cache(out)
    pristine = copy.deepcopy(cache)  # the prompt's cache, for a greedy answer that leaves the key's tokens
    lp, rows = _teacher(model, prompt, logits, cache)
    answer = _greedy_on_path(model, tokenizer, prompt, logits, rows, cache, pristine)
    n_digits = len(str(prompt.key))
    total = float(lp[prompt.digits].sum())
    return {
        "key": prompt.key, "answer": answer, "correct": score_answer(answer, prompt.key),
        "tokens": int(prompt.ids.numel()), "key_token_pos": p, "prefix_reused": shared,
        "key_logprob": total, "key_logprob_per_digit": total / n_digits,
        "answer_logprobs": [round(float(x), 6) for x in lp],  # every answer token, the unscored ones too
    }


def passkey_trials(
    model: Any, tokenizer: Any, length: int, depth: float, trials: Sequence[int], *, reuse: bool = True
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Run ``trials`` (indices) at one (length, depth); yields ``(trial, record)`` as each one finishes.

    ``reuse``: prefill the shared prefix once (its seconds go to the first record as ``prefix_seconds``)
    and start every trial from a copy of its cache; a trial whose prompt does not start with that prefix
    (a key that changed the filler count) runs from scratch (``prefix_reused: false``).

    >>> recs = dict(passkey_trials(model, tok, 4096, 0.5, range(8)))   # doctest: +SKIP
    >>> sorted(recs[0])                                                 # doctest: +SKIP
    ['answer', 'answer_logprobs', 'correct', 'key', 'key_logprob', 'key_logprob_per_digit', ...]
    """
    prompts = [(t, build_prompt(tokenizer, length, depth, passkey_key(length, depth, t))) for t in trials]
    prefix, prefix_s = None, 0.0
    if reuse and prompts:
        t0 = time.perf_counter()
        ids = prompts[0][1].ids[: prompts[0][1].key_token_pos]
        prefix = (ids, returned_cache(_prefill(model, ids, 0, None)))
        prefix_s = time.perf_counter() - t0
    for t, prompt in prompts:  # no grad-mode context across the yields: each call sets its own
        t0 = time.perf_counter()
        rec = _trial(model, tokenizer, prompt, prefix)
        rec["seconds"] = round(time.perf_counter() - t0, 3)
        if prefix_s:
            rec["prefix_seconds"], prefix_s = round(prefix_s, 3), 0.0
        yield t, rec


def passkey_trial(model: Any, tokenizer: Any, length: int, depth: float, trial: int) -> dict[str, Any]:
    """Run one trial on its own (its whole prompt in one forward); a JSON-ready record, see :func:`passkey_trials`."""
    return next(passkey_trials(model, tokenizer, length, depth, [trial], reuse=False))[1]
