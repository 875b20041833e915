"""Perplexity by position and passkey pieces on tiny random models (the real model runs in the CLI test)."""

from __future__ import annotations

import pytest
import torch

from ropekit.eval.passkey import FILLER, KEY_LINE, QUESTION, TASK, build_prompt, greedy_answer, score_answer
from ropekit.eval.perplexity import (
    bucket_edges,
    bucket_label,
    perplexity_record,
    summarize_perplexity,
    token_losses,
)
from tests.patching.tiny import VOCAB, byte_tokenizer, tiny_model


def test_bucket_edges():
    assert bucket_edges(16384, 8192) == [(0, 4096), (4096, 8192), (8192, 12288), (12288, 16384)]
    assert bucket_edges(100, 64) == [(0, 32), (32, 64), (64, 96), (96, 100)]
    assert bucket_label(8192, 12288) == "8k-12k"
    with pytest.raises(ValueError, match="length and context must be >= 2"):
        bucket_edges(1, 64)


def test_token_losses_match_hf_loss():
    model = tiny_model("llama")
    ids = torch.randint(0, VOCAB, (150,), generator=torch.Generator().manual_seed(0))
    losses = token_losses(model, ids, chunk=64)  # several logit chunks
    with torch.no_grad():
        ref = model(ids[None], labels=ids[None]).loss
    assert losses.shape == (149,)
    torch.testing.assert_close(losses.mean(), ref, atol=1e-5, rtol=0)


def test_record_and_summary_partition_the_tokens():
    losses = torch.linspace(1.0, 3.0, 299)
    rec = perplexity_record(losses, context=200)  # buckets of 100: [0,100) [100,200) [200,300)
    assert [(b["lo"], b["hi"]) for b in rec["buckets"]] == [(0, 100), (100, 200), (200, 300)]
    assert sum(sum(b["counts"]) for b in rec["buckets"]) == 299
    assert sum(sum(b["sums"]) for b in rec["buckets"]) == pytest.approx(float(losses.double().sum()))
    summ = summarize_perplexity([rec, rec])
    assert [s["windows"] for s in summ] == [2, 2, 2]
    first = losses[:99].double().mean().exp().item()
    assert summ[0]["ppl"] == pytest.approx(first) and summ[0]["lo95"] <= first <= summ[0]["hi95"]
    assert summ[0]["ppl"] < summ[1]["ppl"] < summ[2]["ppl"]


def test_passkey_prompt_is_the_published_one():
    tok = byte_tokenizer()
    for length, depth in [(3000, 0.0), (3000, 0.5), (4000, 0.8), (4000, 1.0)]:
        p = build_prompt(tok, length, depth, 12345)
        text = tok.decode(p.ids)
        assert length - 2 * len(FILLER) < p.ids.numel() <= length
        lines = text.split("\n")
        assert lines[0] == TASK and lines[2] == KEY_LINE.format(key=12345) and lines[4] == QUESTION
        pre, suf = lines[1].count("The grass is green."), lines[3].count("The grass is green.")
        assert abs(pre / (pre + suf) - depth) < 0.05
    with pytest.raises(ValueError, match="too short for a passkey prompt"):
        build_prompt(tok, 50, 0.5, 12345)
    with pytest.raises(ValueError, match=r"depth must be in \[0, 1\]"):
        build_prompt(tok, 600, 1.5, 12345)


def test_scoring_and_greedy_decoding():
    assert score_answer(" 12345.", 12345) and not score_answer(" 1234.", 12345) and not score_answer(" no", 1)
    assert score_answer("12345 and 999", 12345) and not score_answer("999 and 12345", 12345)
    model, tok = tiny_model("llama"), byte_tokenizer()
    ids = torch.tensor(tok("What is the pass key? The pass key is")["input_ids"])
    out = greedy_answer(model, tok, ids, max_new_tokens=4)
    with torch.no_grad():
        ref = model.generate(ids[None], max_new_tokens=4, do_sample=False, pad_token_id=0)[0, ids.numel():]
    assert out in {tok.decode(ref[:k]) for k in range(1, 5)}  # greedy, at most 4 tokens
