"""Two gloo processes (torch.multiprocessing) must train exactly what one process trains on the same global batch."""

from __future__ import annotations

import dataclasses
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from ropekit.study.distributed import Dist, init_distributed
from ropekit.study.model import ModelConfig
from ropekit.study.train import TrainConfig, batch_loss, local_batch, train

MCFG = ModelConfig(d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, encoding="rope", train_len=16, max_len=64)
TCFG = TrainConfig(steps=3, batch_size=4, lr=1e-2, warmup=1, seed=11, ckpt_every=2)
STREAM = (torch.arange(30_000) * 17 % 253).to(torch.uint8)
GRAD_STEP = 99  # an extra batch whose raw gradients we compare (after training)


def _run(dist: Dist, out: Path, encoding: str = "rope") -> dict:
    mcfg = dataclasses.replace(MCFG, encoding=encoding)  # 2 layers: the hybrid is [RoPE, NoPE]
    model, state = train(mcfg, TCFG, STREAM, out / "model.pt", dist=dist, progress=False)
    model.train()
    net = torch.nn.parallel.DistributedDataParallel(model) if dist.enabled else model
    loss = batch_loss(net, local_batch(STREAM, TCFG, mcfg.train_len, GRAD_STEP, dist))
    loss.backward()
    logged = loss.detach().clone()
    if dist.enabled:
        torch.distributed.all_reduce(logged)
        logged /= dist.world
    return {
        "losses": [x[1] for x in state["losses"]],
        "params": {n: p.detach().clone() for n, p in model.named_parameters()},
        "grads": {n: p.grad.detach().clone() for n, p in model.named_parameters()},
        "grad_loss": float(logged),
    }


def _worker(rank: int, world: int, port: int, out: str, encoding: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist = init_distributed("cpu")
    try:
        assert dist.world == world and dist.rank == rank
        assert torch.distributed.get_backend() == "gloo"
        torch.save(_run(dist, Path(out), encoding), Path(out) / f"rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("encoding", ["rope", "rope-nope4"])
def test_two_gloo_processes_match_one_process(tmp_path: Path, encoding: str) -> None:
    ddp_dir, single_dir = tmp_path / "ddp", tmp_path / "single"
    ddp_dir.mkdir()
    mp.start_processes(_worker, args=(2, _free_port(), str(ddp_dir), encoding), nprocs=2, join=True,
                       start_method="spawn")
    single = _run(Dist(), single_dir, encoding)
    ranks = [torch.load(ddp_dir / f"rank{r}.pt", weights_only=False) for r in range(2)]

    for r in ranks:
        # the loss each step (averaged over ranks) equals the single-process global-batch loss
        torch.testing.assert_close(torch.tensor(r["losses"]), torch.tensor(single["losses"]), rtol=1e-5, atol=1e-6)
        assert abs(r["grad_loss"] - single["grad_loss"]) < 1e-5
        for n, g in single["grads"].items():
            # fp32 sums over differently split rows differ in the last bits: compare relative norms
            assert _rel(r["grads"][n], g) < 1e-4, f"grad {n}: relative error {_rel(r['grads'][n], g):.2e}"
        for n, p in single["params"].items():
            # Adam divides by sqrt(v): last-bit gradient noise on near-zero entries grows to ~1e-5 relative
            assert _rel(r["params"][n], p) < 2e-4, f"param {n}: relative error {_rel(r['params'][n], p):.2e}"
    # both ranks hold identical models and gradients (DDP all-reduced them)
    for n in single["grads"]:
        assert torch.equal(ranks[0]["grads"][n], ranks[1]["grads"][n])
        assert torch.equal(ranks[0]["params"][n], ranks[1]["params"][n])
    # rank 0 wrote the finished checkpoint, which resumes as "done"
    assert torch.load(ddp_dir / "model.pt", weights_only=False)["done"]


def test_ddp_check_can_fail() -> None:
    # the comparison is sensitive: a different global batch gives a visibly different gradient
    from ropekit.study.model import DecoderLM

    torch.manual_seed(0)
    m = DecoderLM(MCFG)
    b1 = local_batch(STREAM, TCFG, 16, 1, Dist())
    b2 = local_batch(STREAM, TCFG, 16, 2, Dist())
    g1 = torch.autograd.grad(batch_loss(m, b1), m.embed.weight)[0]
    g2 = torch.autograd.grad(batch_loss(m, b2), m.embed.weight)[0]
    assert _rel(g1, g2) > 1e-2
