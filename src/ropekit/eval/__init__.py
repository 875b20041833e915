"""Measure what context extension does to a real model: perplexity by position bucket and passkey retrieval.

>>> from ropekit.eval import EvalPlan, prepare, run_plan, summarize          # doctest: +SKIP
>>> p = prepare(EvalPlan(methods=("none", "yarn"), out="out"))              # doctest: +SKIP
>>> summary = summarize(p, run_plan(p))                                      # doctest: +SKIP

Heavy parts (transformers, tqdm) are imported inside the functions that need them.
"""

from ropekit.eval.memory import check_memory, estimate_peak_bytes
from ropekit.eval.methods import MethodSpec, cell_scalings, model_rope, parse_method
from ropekit.eval.passkey import build_prompt, passkey_trial, passkey_trials
from ropekit.eval.perplexity import bucket_edges, perplexity_record, summarize_perplexity, token_losses
from ropekit.eval.runner import METHODS, EvalPlan, prepare, run_plan, summarize
from ropekit.eval.stats import block_bootstrap_ppl, bootstrap_mean, wilson_interval
from ropekit.eval.store import ResultStore, atomic_write_text
from ropekit.eval.text import GENRES, resolve_text, token_windows

__all__ = [
    "GENRES",
    "METHODS",
    "EvalPlan",
    "MethodSpec",
    "ResultStore",
    "atomic_write_text",
    "block_bootstrap_ppl",
    "bootstrap_mean",
    "bucket_edges",
    "build_prompt",
    "cell_scalings",
    "check_memory",
    "estimate_peak_bytes",
    "model_rope",
    "parse_method",
    "passkey_trial",
    "passkey_trials",
    "perplexity_record",
    "prepare",
    "resolve_text",
    "run_plan",
    "summarize",
    "summarize_perplexity",
    "token_losses",
    "token_windows",
    "wilson_interval",
]
