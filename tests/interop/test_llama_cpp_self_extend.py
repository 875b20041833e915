"""llama.cpp's Self-Extend, run by llama.cpp itself (its cache position operations and K-shift, driven by
llama-cli's --grp-attn schedule), against ropekit's ``SelfExtend(compat="llama.cpp")`` on the real SmolLM2 GGUF.

The bar is the engines' own noise floor: the per-token loss gap of the two engines without Self-Extend.
llama-cli's ``seq_div`` path re-rotates grouped keys with the wrong sign in llama-cpp-python 0.3.36 (pinned
by .ci/run); a model of exactly that error reproduces it, which is the evidence for the diagnosis.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

import ropekit
from ropekit.extension import SelfExtend
from ropekit.extension.methods import Part
from ropekit.interop.llama_cpp_self_extend import (
    hf_batched_losses,
    llama_cpp_self_extend_losses,
    parity_report,
    self_extend_losses,
)

G, W, BATCH, N = 8, 64, 128, 1024  # strong grouping inside SmolLM2's 8k context: 14 blocks grouped by the end
SE = SelfExtend(group_size=G, window=W, compat="llama.cpp")


@dataclass(frozen=True, kw_only=True)
class _SignFlippedSeqDiv(SelfExtend):
    """llama-cli's Self-Extend as the shipped ``seq_div`` computes it: grouped keys rotated to 2p - p // G."""

    def parts(self, q_pos: torch.Tensor, k_pos: torch.Tensor) -> list[Part]:
        near, far = super().parts(q_pos, k_pos)
        return [near, Part(q_at=far.q_at, k_at=(2 * k_pos - k_pos // self.group_size).double(), mask=far.mask)]


@pytest.fixture(scope="module")
def parity(llama_cpp, smollm2_gguf):
    from ropekit.eval.text import resolve_text, token_windows

    model, tok = ropekit.load_model("smollm2-135m", device="cpu")
    ids = token_windows(tok, resolve_text("stdlib"), N, 1)[0].ids
    losses = self_extend_losses(smollm2_gguf, SE, ids, model=model, n_batch=BATCH)
    report = parity_report(losses, SE, n_batch=BATCH)
    flipped = hf_batched_losses(model, ids, _SignFlippedSeqDiv(group_size=G, window=W, compat="llama.cpp"),
                                n_batch=BATCH)
    shipped = losses["llama.cpp seq_div"]
    report["gap"]["seq_div_vs_sign_flip_model"] = float((shipped - flipped)[W:].abs().double().mean())
    return report


def test_ropekit_llama_cpp_mode_matches_llama_cpp(parity):
    noise, gap = parity["noise_floor"], parity["gap"]
    assert 0 < noise < 0.1, parity  # Q4_1 weights, Q8 activations, f16 cache vs the fp32 HF model
    assert gap["seq_add"] <= 1.5 * noise, parity
    # the claim separates: ropekit's paper mode and no Self-Extend are far off llama.cpp's schedule
    assert gap["seq_add_vs_paper_mode"] >= 3 * gap["seq_add"], parity
    assert gap["seq_add_vs_no_self_extend"] >= 3 * gap["seq_add"], parity


def test_shipped_seq_div_rerotates_grouped_keys_with_the_wrong_sign(parity):
    # if a llama.cpp upgrade fixes pos_div, the first assertion fails: then drop this test and the doc's warning
    noise, gap = parity["noise_floor"], parity["gap"]
    assert not parity["seq_div_ok"] and gap["seq_div"] >= 10 * noise, parity
    assert gap["seq_div_vs_sign_flip_model"] <= 2 * noise, parity
    assert parity["mean_loss"]["llama.cpp seq_div"] > parity["mean_loss"]["llama.cpp seq_add"] + 1.0, parity


def test_drivers_refuse_bad_input(llama_cpp, smollm2_gguf):
    with pytest.raises(TypeError, match="compat='llama.cpp'"):
        llama_cpp_self_extend_losses(smollm2_gguf, [1, 2, 3], SelfExtend(group_size=2, window=8))
    with pytest.raises(ValueError, match="n_batch"):
        llama_cpp_self_extend_losses(smollm2_gguf, [1, 2, 3], SE, n_batch=0)
    with pytest.raises(ValueError, match="division"):
        llama_cpp_self_extend_losses(smollm2_gguf, [1, 2, 3], SE, division="exact")
    with pytest.raises(ValueError, match="at least 2"):
        hf_batched_losses(None, [1], SE)
