"""Passkey with power: prefix reuse equals independent trials, the teacher-forced key score, the greedy path."""

from __future__ import annotations

import pytest
import torch

from ropekit.eval import passkey as pk
from ropekit.eval.passkey import build_prompt, greedy_answer, passkey_key, passkey_trials, score_answer
from ropekit.patching.verify import cache_kwargs, returned_cache
from tests.patching.tiny import byte_tokenizer, tiny_model

LENGTH, TRIALS = 600, 3


def _both(model, tok, length=LENGTH, depth=0.5, trials=TRIALS):
    reused = dict(passkey_trials(model, tok, length, depth, range(trials)))
    full = dict(passkey_trials(model, tok, length, depth, range(trials), reuse=False))
    return reused, full


def _assert_same(reused, full, atol=1e-4):
    assert reused.keys() == full.keys()
    for t in reused:
        a, b = reused[t], full[t]
        assert a["prefix_reused"] and not b["prefix_reused"]
        assert (a["key"], a["answer"], a["correct"], a["tokens"]) == (b["key"], b["answer"], b["correct"], b["tokens"])
        assert a["key_logprob"] == pytest.approx(b["key_logprob"], abs=atol)
        assert a["answer_logprobs"] == pytest.approx(b["answer_logprobs"], abs=atol)


@pytest.mark.parametrize("family", ["llama", "qwen3"])
@pytest.mark.parametrize("depth", [0.0, 0.5, 0.97])
def test_prefix_reuse_equals_independent_trials(family, depth):
    model, tok = tiny_model(family), byte_tokenizer()
    reused, full = _both(model, tok, depth=depth)
    _assert_same(reused, full)
    assert "prefix_seconds" in reused[0] and "prefix_seconds" not in reused[1]
    assert len({r["key"] for r in reused.values()}) == TRIALS  # a fresh key per trial


def test_prefix_reuse_through_a_patched_extension_method():
    from ropekit.eval.methods import extension_for
    from ropekit.patching import patch

    model, tok = tiny_model("llama"), byte_tokenizer()  # trained context 64: the prompt is ~10x beyond it
    for method in ("self-extend", "rerope"):
        with patch(model, extension_for(method, 2.0, 64)):
            reused, full = _both(model, tok, trials=2)
        _assert_same(reused, full)


def test_key_logprob_matches_a_direct_forward():
    model, tok = tiny_model("llama"), byte_tokenizer()
    rec = dict(passkey_trials(model, tok, LENGTH, 0.5, [1]))[1]
    prompt = build_prompt(tok, LENGTH, 0.5, passkey_key(LENGTH, 0.5, 1))
    ids = torch.cat([prompt.ids, prompt.answer])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids[None]).logits[0].double(), -1)
    n, k = prompt.ids.numel(), prompt.answer.numel()
    direct = logp[torch.arange(n - 1, n + k - 1), prompt.answer]
    assert tok.decode(prompt.answer) == f" {prompt.key}" and prompt.digits.tolist() == [False] + [True] * 5
    assert rec["answer_logprobs"] == pytest.approx(direct.tolist(), abs=1e-4)
    assert rec["key_logprob"] == pytest.approx(float(direct[1:].sum()), abs=1e-4)  # the space is not scored
    assert rec["key_logprob_per_digit"] == pytest.approx(rec["key_logprob"] / 5)
    assert rec["key_token_pos"] == prompt.key_token_pos and rec["tokens"] == n


def test_greedy_on_the_teacher_path_equals_plain_greedy(monkeypatch):
    """Make the 'key' what the model greedily says, so the shared pass follows the answer path to its end."""
    model, tok = tiny_model("llama"), byte_tokenizer()
    prompt = build_prompt(tok, LENGTH, 0.5, 12345)
    said = greedy_answer(model, tok, prompt.ids)
    assert said  # a random model still says something
    for answer in (tok(said)["input_ids"], tok(said)["input_ids"][:3], [0, 1, 2]):  # whole, prefix, off-path
        monkeypatch.setattr(pk, "answer_ids", lambda t, key, a=answer: torch.tensor(a))
        recs = dict(passkey_trials(model, tok, LENGTH, 0.5, range(2)))
        for t, rec in recs.items():
            ids = build_prompt(tok, LENGTH, 0.5, passkey_key(LENGTH, 0.5, t)).ids
            assert rec["answer"] == greedy_answer(model, tok, ids)


def test_a_prompt_that_does_not_share_the_prefix_runs_from_scratch():
    model, tok = tiny_model("llama"), byte_tokenizer()
    prompt = build_prompt(tok, LENGTH, 0.5, 12345)
    other = build_prompt(tok, LENGTH, 0.2, 12345)  # another depth: another prefix
    prefix = (other.ids[: other.key_token_pos], None)
    rec = pk._trial(model, tok, prompt, prefix)
    ref = pk._trial(model, tok, prompt, None)
    assert not rec["prefix_reused"] and rec["answer_logprobs"] == ref["answer_logprobs"]


@pytest.fixture(scope="module")
def smollm2():
    from ropekit.models import load_model

    return load_model("smollm2-135m", device="cpu")


def test_prefix_reuse_on_smollm2_at_1k(smollm2):
    model, tok = smollm2
    reused, full = _both(model, tok, length=1024, depth=0.5, trials=2)
    _assert_same(reused, full, atol=2e-4)
    # a real LM finds a key 500 tokens back inside its context, with most of the probability on its digits
    assert all(r["correct"] and score_answer(r["answer"], r["key"]) for r in reused.values())
    assert all(-1.0 < r["key_logprob_per_digit"] <= 0.0 for r in reused.values())


def test_length_dependent_frequencies_see_a_two_chunk_prefill():
    """Dynamic NTK past the trained context: the shared prefix is rotated at its own length (as HF's dynamic RoPE
    does for a cached prefix), so reuse is *not* the one-forward result there; a static method's is (above)."""
    from ropekit.core.scaling import scaling_from_factor
    from ropekit.patching import patch

    model, tok = tiny_model("llama"), byte_tokenizer()
    with patch(model, scaling_from_factor("dynamic", 2.0, original_max_position_embeddings=64)):
        reused, full = _both(model, tok, trials=1)
        prompt = build_prompt(tok, LENGTH, 0.5, reused[0]["key"])
        p = prompt.key_token_pos
        with torch.no_grad():  # the same two chunks by hand: prefix alone, then the rest on its cache
            first = model(input_ids=prompt.ids[None, :p], use_cache=True)
            ids = torch.cat([prompt.ids[p:], prompt.answer])
            rest = model(input_ids=ids[None], **cache_kwargs(model, returned_cache(first)),
                         position_ids=torch.arange(p, p + ids.numel())[None])
        logp = torch.log_softmax(rest.logits[0].double(), -1)
        k = prompt.answer.numel()
        by_hand = logp[torch.arange(ids.numel() - k - 1, ids.numel() - 1), prompt.answer]
    assert reused[0]["answer_logprobs"] == pytest.approx(by_hand.tolist(), abs=1e-4)
    # a random tiny model is nearly uniform, so the gap is small, but far above the static methods' (exactly 0 there)
    assert abs(reused[0]["key_logprob"] - full[0]["key_logprob"]) > 2e-5
