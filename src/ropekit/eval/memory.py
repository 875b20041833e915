"""Peak-memory estimate of one eval forward pass, checked before the model is loaded.

The estimate is what a forward adds on top of the loaded weights (which are counted too, from the
parameter count), fp32 activations, for the two kinds of forward the eval runs:

* perplexity (:func:`ropekit.eval.perplexity.token_losses`): no KV cache, logits in blocks of
  :func:`~ropekit.eval.perplexity.logit_chunk` positions;
* passkey (:func:`ropekit.eval.passkey.greedy_answer`): KV cache kept, last-position logits only.

Terms: a per-token term from the config (hidden/MLP activations in flight; the KV cache for passkey),
a quadratic term for the ``n x n`` attention masks transformers materialises for SDPA (one per distinct
mask: causal, and sliding-window when the model has such layers; eager attention adds the score matrix),
and the logits block. The constants were fitted to peak RSS measured in fresh processes (weights faulted
in first) on SmolLM2-135M and Gemma-3-270M, 2 CPU threads, fp32, SDPA, and rounded up. Growth over the
loaded weights, measured / estimated, GiB:

=====================  ======  ======  ======  ======
Gemma-3-270M           2k      4k      8k      16k
=====================  ======  ======  ======  ======
perplexity forward     0.60    0.63    0.77    1.63
  estimate             0.75    0.76    0.89    2.03
passkey prefill        0.13    0.45    0.87    2.14
  estimate             0.43    0.65    1.17    2.59
=====================  ======  ======  ======  ======

SmolLM2-135M at 4k / 8k: perplexity 0.53 / 0.42, passkey 0.29 / 0.61. Extrapolated to Gemma's 48k window
the estimate is about 11.6 GiB (plus 1 GiB of weights), the measured trend about 9 GiB; ``ropekit eval``
records every cell's real peak (``peak_gib``) so the constants can be refitted from long runs.

>>> from ropekit.models import hf_config_of
>>> cfg = hf_config_of("smollm2-135m")
>>> estimate_peak_bytes(cfg, 4096) < estimate_peak_bytes(cfg, 16384) < estimate_peak_bytes(cfg, 16384, passkey=True)
True
"""

from __future__ import annotations

from typing import Any

__all__ = ["PeakMeter", "available_bytes", "check_memory", "estimate_peak_bytes"]

FP32 = 4  # bytes per activation: the eval runs fp32 models
# bytes per n x n entry per distinct mask: a bool mask plus what SDPA on CPU derives from it. Gemma-3-270M
# grew by 2.5 (perplexity) to 3.1 (passkey) bytes per entry over both masks from 8k to 16k tokens, but a 48k
# window passed 5.3 (14.9 GB, then OOM-killed, experiments/LOG.md): 2 x 4 keeps the refusal on the safe side
MASK_BYTES = 4
SAFETY = 1.0  # multiplier on the activation terms (measured peaks are 0-70% under the estimate, see the doc)
OVERHEAD = 256 << 20  # allocator slack, masks' index tensors, small buffers
USABLE = 0.9  # refuse above this fraction of the free memory: the OS and page cache need some


def available_bytes(device: Any) -> int | None:
    """Free memory on ``device``: CUDA's free bytes, else ``MemAvailable`` from /proc/meminfo (None: unknown)."""
    import torch

    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _get(config: Any, name: str, default: Any = None) -> Any:
    value = getattr(config, name, None)
    return default if value is None else value


def estimate_peak_bytes(config: Any, n: int, *, passkey: bool = False, weights_bytes: int = 0) -> int:
    """Estimated peak bytes of one ``n``-token eval forward of a model with HF ``config`` (see module doc).

    ``weights_bytes``: added as is (the loaded parameters; the check runs before they are loaded).

    >>> from ropekit.models import hf_config_of
    >>> cfg = hf_config_of("smollm2-135m")
    >>> estimate_peak_bytes(cfg, 8192, weights_bytes=2**30) - estimate_peak_bytes(cfg, 8192) == 2**30
    True
    """
    from ropekit.eval.perplexity import logit_chunk

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int (tokens), got {n!r}.")
    hidden, layers = int(config.hidden_size), int(config.num_hidden_layers)
    heads = int(config.num_attention_heads)
    kv = int(_get(config, "num_key_value_heads", heads))
    head_dim = int(_get(config, "head_dim", hidden // heads))
    inter = int(_get(config, "intermediate_size", 4 * hidden))
    vocab = int(config.vocab_size)
    # one decoder layer in flight: residual/normed/attention-out/MLP-out hidden states, q and its rotated
    # copy and SDPA output, k/v and their rotated copies, gate/up/product of the MLP (fp32)
    per_token = FP32 * (4 * hidden + 3 * heads * head_dim + 4 * kv * head_dim + 3 * inter)
    layer_types = set(_get(config, "layer_types", ()) or ())
    masks = 1 + ("sliding_attention" in layer_types)  # causal, plus the sliding-window one
    quadratic = masks * MASK_BYTES * n * n
    if _get(config, "_attn_implementation", "sdpa") == "eager":
        quadratic += 2 * heads * FP32 * n * n  # eager attention materialises scores and probabilities
    if passkey:
        per_token += 2 * FP32 * layers * kv * head_dim  # KV cache of every layer (sliding ones counted in full)
        logits = 2 * FP32 * vocab  # last position only
    else:
        logits = 2 * FP32 * vocab * min(logit_chunk(vocab), n)  # a logits block and its log-softmax
    # the layers and the logits blocks run one after the other: the peak is the larger phase
    layers_phase = SAFETY * (n * per_token + quadratic)
    head_phase = logits + FP32 * n * hidden  # the final hidden states stay alive while the head runs
    return int(weights_bytes + max(layers_phase, head_phase) + OVERHEAD)


def check_memory(config: Any, n: int, device: Any, *, passkey: bool = False, weights_bytes: int = 0) -> int:
    """Raise ``ValueError`` when an ``n``-token forward cannot fit in ``device``'s free memory; returns the estimate.

    The message names the option to change (``--length`` / ``--passkey-lengths``) and the estimate.
    """
    need = estimate_peak_bytes(config, n, passkey=passkey, weights_bytes=weights_bytes)
    avail = available_bytes(device)
    if avail is not None and need > USABLE * avail:
        option = "--passkey-lengths" if passkey else "--length"
        raise ValueError(
            f"{option} {n} needs about {need / 2**30:.1f} GiB (estimated peak of one {n}-token forward, weights "
            f"included) but only {avail / 2**30:.1f} GiB is available on {device}; use shorter lengths."
        )
    return need


class PeakMeter:
    """Peak memory of a block of work: CUDA's peak allocation, or the process's peak RSS on CPU (Linux:
    ``VmHWM`` after resetting it through ``/proc/self/clear_refs``). ``peak`` is None where unsupported.

    >>> with PeakMeter(torch.device("cpu")) as m:       # doctest: +SKIP
    ...     work()
    >>> m.peak                                           # doctest: +SKIP
    """

    def __init__(self, device: Any) -> None:
        self.device = device
        self.peak: int | None = None

    def __enter__(self) -> PeakMeter:
        import torch

        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            try:
                with open("/proc/self/clear_refs", "w") as fh:
                    fh.write("5")  # "5": reset the peak RSS to the current RSS
            except OSError:
                pass
        return self

    def __exit__(self, *exc: object) -> None:
        import torch

        if self.device.type == "cuda":
            self.peak = int(torch.cuda.max_memory_allocated(self.device))
            return
        try:
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        self.peak = int(line.split()[1]) * 1024
        except OSError:
            self.peak = None
