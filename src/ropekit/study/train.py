"""The trainer: AdamW, warmup + cosine, resumable checkpoints, DistributedDataParallel when launched by torchrun.

The global batch of step ``s`` is a pure function of ``(seed, s)`` (:func:`ropekit.study.data.sample_batch`);
rank ``r`` of ``w`` takes rows ``r::w``. With equal local batches DDP's gradient average equals the
single-process gradient of the global-batch mean loss, so 1 process and N processes train the same model.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ropekit.core.validation import check_positive, check_positive_int
from ropekit.study.data import sample_batch
from ropekit.study.distributed import Dist
from ropekit.study.io import atomic_save
from ropekit.study.model import DecoderLM, ModelConfig

__all__ = ["TrainConfig", "batch_loss", "load_checkpoint", "local_batch", "lr_at", "make_optimizer", "train"]


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings. ``batch_size`` is the GLOBAL batch (split over DDP ranks)."""

    steps: int = 300
    batch_size: int = 16
    lr: float = 3e-3
    warmup: int = 30
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    ckpt_every: int = 100

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "ckpt_every"):
            check_positive_int(name, getattr(self, name))
        check_positive("lr", self.lr)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to ``lr`` over ``warmup`` steps, then cosine down to ``lr * min_lr_ratio``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; no weight decay on embeddings (token and learned-position), norms and biases.

    Why not decay embeddings: the learned-position rows past the training length get no gradient, and
    decoupled decay would silently shrink them toward zero, changing what "extrapolating" means.
    """
    decay, keep = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() == 2 and not name.startswith(("embed.", "encoding.")) else keep).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": keep, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95))


def local_batch(stream: torch.Tensor, cfg: TrainConfig, train_len: int, step: int, dist: Dist) -> torch.Tensor:
    """This rank's rows ``(batch_size // world, train_len + 1)`` of step ``step``'s global batch."""
    if cfg.batch_size % dist.world:
        raise ValueError(f"batch_size={cfg.batch_size} must be divisible by the world size {dist.world}.")
    full = sample_batch(stream, cfg.batch_size, train_len, seed=cfg.seed, step=step)
    return full[dist.rank :: dist.world].to(dist.device)


def batch_loss(net: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Mean next-token NLL of ``batch`` ``(rows, seqlen + 1)``; calls ``net`` itself so DDP hooks run."""
    logits = net(batch[:, :-1])
    return F.cross_entropy(logits.float().flatten(0, 1), batch[:, 1:].flatten())


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> tuple[DecoderLM, dict]:
    """Rebuild a model from a checkpoint written by :func:`train`; returns ``(model, checkpoint)``."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    model = DecoderLM(ModelConfig(**ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), ckpt


def train(
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    stream: torch.Tensor,
    ckpt_path: str | Path,
    *,
    dist: Dist | None = None,
    progress: bool = True,
    desc: str = "train",
) -> tuple[DecoderLM, dict]:
    """Train (or resume, or just load when finished) and return ``(model, checkpoint dict)``.

    A checkpoint (model, optimiser, step, loss history) is written atomically every ``ckpt_every`` steps
    and at the end (``"done": True``) by rank 0; a rerun resumes from it and skips finished runs.
    """
    from tqdm.auto import tqdm

    dist = dist or Dist()
    ckpt_path = Path(ckpt_path)
    torch.manual_seed(cfg.seed)
    model = DecoderLM(model_cfg).to(dist.device)
    opt = make_optimizer(model, cfg)
    state: dict = {"step": 0, "losses": [], "done": False}
    if ckpt_path.exists():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if state["model_config"] != model_cfg.to_dict() or state["train_config"] != asdict(cfg):
            raise ValueError(f"checkpoint {ckpt_path} was written for other settings; use a fresh out dir.")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optim"])
    if state["done"]:
        return model.eval(), state

    net: nn.Module = model
    if dist.enabled:
        ids = [dist.device.index] if dist.device.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    losses: list[list[float]] = list(state["losses"])
    bar = tqdm(range(state["step"], cfg.steps), desc=desc, disable=not (progress and dist.is_main),
               initial=state["step"], total=cfg.steps, mininterval=2.0, leave=False)
    model.train()
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        batch = local_batch(stream, cfg, model_cfg.train_len, step, dist)
        loss = batch_loss(net, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        logged = loss.detach().clone()
        if dist.enabled:
            torch.distributed.all_reduce(logged)
            logged /= dist.world
        losses.append([step, float(logged)])
        bar.set_postfix(loss=f"{float(logged):.3f}", refresh=False)
        done = step + 1 == cfg.steps
        if done or (step + 1) % cfg.ckpt_every == 0:
            state = {
                "model": model.state_dict(), "optim": opt.state_dict(), "step": step + 1, "losses": losses,
                "done": done, "model_config": model_cfg.to_dict(), "train_config": asdict(cfg),
            }
            if dist.is_main:
                atomic_save(state, ckpt_path)
            dist.barrier()
    bar.close()
    return model.eval(), state
