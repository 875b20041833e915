"""The eval's peak-memory estimate: shape of the terms, the refusal, and an upper bound on a real forward."""

from __future__ import annotations

import gc

import pytest
import torch

from ropekit.eval import memory
from ropekit.eval.memory import PeakMeter, check_memory, estimate_peak_bytes
from tests.eval.test_methods import gemma_config
from tests.patching.tiny import tiny_config


def test_terms_grow_as_expected():
    g = gemma_config(vocab_size=262144, hidden_size=640, intermediate_size=2048, num_hidden_layers=18)
    est = [estimate_peak_bytes(g, n) for n in (8192, 16384, 32768, 65536)]
    assert est == sorted(est)
    assert (est[3] - est[2]) > 2 * (est[2] - est[1])  # the n x n masks dominate at long lengths
    assert estimate_peak_bytes(g, 32768, passkey=True) > estimate_peak_bytes(g, 32768)  # + KV cache
    flat = gemma_config(layer_types=["full_attention"] * 12)
    assert estimate_peak_bytes(flat, 32768) < estimate_peak_bytes(gemma_config(), 32768)  # one mask, not two
    eager = tiny_config()
    eager._attn_implementation = "eager"
    assert estimate_peak_bytes(eager, 8192) > estimate_peak_bytes(tiny_config(), 8192)
    assert estimate_peak_bytes(g, 1024, weights_bytes=10**9) == estimate_peak_bytes(g, 1024) + 10**9
    with pytest.raises(ValueError, match="n must be a positive int"):
        estimate_peak_bytes(g, 0)


def test_check_memory_refuses_naming_the_option(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(memory, "available_bytes", lambda device: 10 * 2**30)
    assert check_memory(tiny_config(), 4096, cpu) == estimate_peak_bytes(tiny_config(), 4096)
    monkeypatch.setattr(memory, "available_bytes", lambda device: 2**28)
    with pytest.raises(ValueError, match=r"--length 65536 needs about .* GiB .* only 0\.2 GiB is available on cpu"):
        check_memory(tiny_config(), 65536, cpu)
    with pytest.raises(ValueError, match="--passkey-lengths 65536 needs about"):
        check_memory(tiny_config(), 65536, cpu, passkey=True)
    monkeypatch.setattr(memory, "available_bytes", lambda device: None)  # unknown: never refuse
    assert check_memory(tiny_config(), 10**6, cpu) > 0


def test_available_bytes_reads_meminfo():
    avail = memory.available_bytes(torch.device("cpu"))
    assert avail is None or 0 < avail < 2**50


@pytest.mark.parametrize("passkey", [False, True])
def test_estimate_bounds_a_real_smollm2_forward(passkey):
    """The measured peak growth of a real 4k-token forward stays under the estimate."""
    from ropekit.eval.perplexity import token_losses
    from ropekit.models import load_model

    model, _ = load_model("smollm2-135m", device="cpu")
    ids = torch.randint(10, 1000, (4096,), generator=torch.Generator().manual_seed(0))
    gc.collect()
    with open("/proc/self/status") as fh:
        before = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmRSS:"))
    with PeakMeter(torch.device("cpu")) as meter, torch.no_grad():
        if passkey:
            model(input_ids=ids[None], use_cache=True, logits_to_keep=1)
        else:
            token_losses(model, ids)
    if meter.peak is None:
        pytest.skip("no /proc peak RSS on this platform")
    # weights counted as the runner counts them: safetensors are mmapped, so the forward faults them in
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    assert meter.peak - before < estimate_peak_bytes(model.config, 4096, passkey=passkey, weights_bytes=weights)
