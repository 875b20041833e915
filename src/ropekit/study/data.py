"""The corpus: Python standard-library sources as byte tokens, split into train / held-out by FILE.

Why by file: the held-out text must be text the model never saw, not the tail of a document whose
head it trained on. A file's split is a pure function of its relative path (a SHA-256 bucket), so it
is deterministic across runs and machines and does not move when other files are added or removed.
Files are concatenated in sorted-path order, each followed by a NUL separator byte (token 0).
"""

from __future__ import annotations

import hashlib
import os
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["VOCAB_SIZE", "Corpus", "file_split", "list_sources", "load_corpus", "sample_batch", "stdlib_root"]

VOCAB_SIZE = 256  # byte-level tokens
_SEP = b"\x00"
_SKIP_DIRS = {"site-packages", "dist-packages", "__pycache__"}


@dataclass(frozen=True)
class Corpus:
    """Token streams (uint8 1-D tensors) and the files each came from."""

    train: torch.Tensor
    heldout: torch.Tensor
    train_files: tuple[str, ...]
    heldout_files: tuple[str, ...]
    root: str


def stdlib_root() -> Path:
    """The standard-library source folder of the running interpreter."""
    return Path(sysconfig.get_paths()["stdlib"])


def list_sources(root: str | os.PathLike[str], suffix: str = ".py") -> list[str]:
    """Relative POSIX paths of every ``suffix`` file under ``root`` (third-party folders skipped), sorted."""
    root = Path(root)
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in filenames:
            if name.endswith(suffix):
                out.append(Path(dirpath, name).relative_to(root).as_posix())
    return sorted(out)


def file_split(relpath: str, heldout_percent: float) -> str:
    """``"heldout"`` or ``"train"`` for a file, from a SHA-256 bucket of its relative path."""
    if not 0 < heldout_percent < 100:
        raise ValueError(f"heldout_percent must be in (0, 100), got {heldout_percent!r}.")
    bucket = int.from_bytes(hashlib.sha256(relpath.encode()).digest()[:8], "big") % 10_000
    return "heldout" if bucket < heldout_percent * 100 else "train"


def _stream(root: Path, files: list[str], max_file_bytes: int) -> torch.Tensor:
    parts = []
    for rel in files:
        data = (root / rel).read_bytes()[:max_file_bytes]
        parts.append(data + _SEP)
    buf = bytearray(b"".join(parts))
    return torch.frombuffer(buf, dtype=torch.uint8).clone() if buf else torch.zeros(0, dtype=torch.uint8)


def load_corpus(
    root: str | os.PathLike[str] | None = None,
    *,
    heldout_percent: float = 10.0,
    max_file_bytes: int = 200_000,
) -> Corpus:
    """Load every ``.py`` file under ``root`` (default: this interpreter's stdlib) and split by file.

    ``max_file_bytes`` truncates the rare huge generated files so no single file dominates.

    >>> c = load_corpus()
    >>> set(c.train_files).isdisjoint(c.heldout_files)
    True
    """
    root = Path(root) if root is not None else stdlib_root()
    files = list_sources(root)
    if not files:
        raise ValueError(f"root={str(root)!r} holds no .py files.")
    train = [f for f in files if file_split(f, heldout_percent) == "train"]
    held = [f for f in files if file_split(f, heldout_percent) == "heldout"]
    if not train or not held:
        raise ValueError(f"heldout_percent={heldout_percent} leaves an empty split for the {len(files)} files.")
    return Corpus(
        train=_stream(root, train, max_file_bytes),
        heldout=_stream(root, held, max_file_bytes),
        train_files=tuple(train),
        heldout_files=tuple(held),
        root=str(root),
    )


def sample_batch(stream: torch.Tensor, batch: int, length: int, *, seed: int, step: int) -> torch.Tensor:
    """``(batch, length + 1)`` int64 random crops of ``stream``; a pure function of ``(seed, step)``.

    Being a pure function of the step is what makes training resumable mid-run and lets every DDP rank
    agree on the global batch without communication.
    """
    if stream.numel() < length + 2:
        raise ValueError(f"length={length} needs a stream longer than {length + 1} tokens, got {stream.numel()}.")
    gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
    starts = torch.randint(0, stream.numel() - length - 1, (batch,), generator=gen)
    idx = starts[:, None] + torch.arange(length + 1)
    return stream[idx].long()
