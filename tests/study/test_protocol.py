from __future__ import annotations

import pytest
import torch

from ropekit.study.protocol import SpanPlan, evaluate_span_plan, make_span_plan, score_spans
from ropekit.study.stats import bootstrap_indices, mean_over_seeds, ppl_ci, ratio_ci

CONTEXTS = (16, 32, 64, 128)


def _plan(**kw) -> SpanPlan:
    args = dict(target=8, n_windows=10, n_blocks=3, n_regions=3, region_len=32, stride=8)
    args.update(kw)
    return make_span_plan(5000, CONTEXTS, **args)


def _targets(span: tuple[int, int, int]) -> range:
    start, length, n = span
    return range(start + length + 1 - n, start + length + 1)


@pytest.mark.parametrize("proto", ["same_target", "nonoverlap", "sliding"])
def test_every_context_scores_the_same_target_tokens(proto: str) -> None:
    plan = _plan()
    per_ctx = {}
    for c in CONTEXTS:
        units: dict[int, list[int]] = {}
        for u, span in plan.spans[proto][c]:
            assert span[0] >= 0 and span[0] + span[1] + 1 <= 5000
            assert span[1] == c
            units.setdefault(u, []).extend(_targets(span))
        per_ctx[c] = {u: sorted(t) for u, t in units.items()}
    for c in CONTEXTS[1:]:
        assert per_ctx[c] == per_ctx[CONTEXTS[0]]
    assert len(per_ctx[CONTEXTS[0]]) == plan.n_units[proto]


def test_same_target_windows_keep_targets_last_and_grow_context() -> None:
    plan = _plan()
    for c in CONTEXTS:
        for _, (start, length, n) in plan.spans["same_target"][c]:
            assert n == 8 and length == c  # the last 8 of c predictions; c - 8 tokens of context before them


def test_plan_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="target"):
        _plan(target=17)
    with pytest.raises(ValueError, match="stride"):
        _plan(stride=7)
    with pytest.raises(ValueError, match="too short"):
        make_span_plan(100, CONTEXTS, target=8, n_windows=3, n_blocks=1, n_regions=1, region_len=8, stride=8)


class TargetEcho(torch.nn.Module):
    """NLL of predicting token t := t's value, and records the window lengths it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.lengths: list[int] = []

    def token_nll(self, rows: torch.Tensor) -> torch.Tensor:
        self.lengths.append(rows.shape[1] - 1)
        return rows[:, 1:].double()


def test_score_spans_returns_the_target_tokens_nll() -> None:
    stream = (torch.arange(3000) % 251).to(torch.uint8)
    spans = [(10, 16, 4), (100, 32, 32), (7, 16, 1)]
    out = score_spans(TargetEcho(), stream, spans, device=torch.device("cpu"), batch_tokens=20)
    for span, nll in zip(spans, out):
        assert nll.tolist() == [float(stream[t]) for t in _targets(span)]


def test_evaluate_plan_unit_means_do_not_depend_on_context() -> None:
    stream = (torch.arange(5000) * 7 % 256).to(torch.uint8)
    model = TargetEcho()
    res = evaluate_span_plan(model, stream, _plan())
    for proto, per_ctx in res.items():
        first = per_ctx[CONTEXTS[0]]
        for c in CONTEXTS:
            assert per_ctx[c] == pytest.approx(first)
    assert set(model.lengths) == set(CONTEXTS)


def test_bootstrap_ci_and_paired_ratio() -> None:
    torch.manual_seed(0)
    a = (torch.randn(200) * 0.5 + 2.0).tolist()
    idx = bootstrap_indices(200, 500, seed=1)
    ci = ppl_ci(a, idx)
    assert ci["lo"] < ci["ppl"] < ci["hi"]
    same = ratio_ci(a, a, idx)
    assert same == {"ratio": 1.0, "lo": 1.0, "hi": 1.0}
    shifted = ratio_ci([x + 0.1 for x in a], a, idx)  # paired: a constant shift has a zero-width CI
    assert shifted["lo"] == pytest.approx(shifted["hi"]) == pytest.approx(torch.tensor(0.1).exp().item())
    assert mean_over_seeds({0: [1.0, 2.0], 1: [3.0, 4.0]}) == [2.0, 3.0]
    with pytest.raises(ValueError, match="same units"):
        ratio_ci([1.0], [1.0, 2.0], idx)
