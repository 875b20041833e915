"""Structural check of a GGUF file before ``gguf.GGUFReader`` trusts it.

``GGUFReader`` believes every count and length in the file: a truncated file or an absurd kv count, array
length or string length makes it loop for hours or fail with an ``IndexError`` deep inside numpy. This walk
reads the same layout (GGUF v2/v3: header, key-value pairs, tensor infos, aligned tensor data) and checks
each count and length against the bytes that are actually left, so a malformed file fails with a
``ValueError`` that says what is wrong and where, in time linear in the file size and with bounded memory
(the file is memory-mapped, never read whole).
"""

from __future__ import annotations

import mmap
import os
import struct

__all__ = ["check_gguf_file"]

_HEADER = 24  # magic, version, tensor count, kv count
_MAX_DIMS = 4  # GGML_MAX_DIMS
_MAX_NESTING = 2  # arrays of arrays are legal GGUF; deeper nesting is never used
#: GGUF value type -> size in bytes of a scalar (8 = string and 9 = array have their own layout).
_SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9


class _Cursor:
    """Bounds-checked little/big-endian reads over a memory-mapped file."""

    def __init__(self, buf: mmap.mmap, size: int, path: str) -> None:
        self.buf, self.size, self.path, self.pos, self.order = buf, size, path, 0, "<"

    def left(self) -> int:
        return self.size - self.pos

    def fail(self, what: str) -> ValueError:
        return ValueError(f"{self.path}: malformed GGUF at byte {self.pos} of {self.size}: {what}")

    def need(self, n: int, what: str) -> None:
        if n > self.left():
            raise self.fail(f"{what} needs {n} bytes, only {self.left()} left (truncated file or absurd length)")

    def uint(self, fmt: str, what: str) -> int:
        n = struct.calcsize(fmt)
        self.need(n, what)
        (v,) = struct.unpack_from(self.order + fmt, self.buf, self.pos)
        self.pos += n
        return int(v)

    def skip(self, n: int, what: str) -> None:
        self.need(n, what)
        self.pos += n

    def string(self, what: str) -> bytes:
        n = self.uint("Q", f"{what} length")
        self.need(n, f"{what} ({n} bytes)")
        out = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return out


def _value(c: _Cursor, vtype: int, what: str, depth: int = 0) -> int | None:
    """Skip one value of ``vtype``; returns a u32 scalar's value (``general.alignment``), else None."""
    if vtype in _SCALAR:
        start = c.pos
        c.skip(_SCALAR[vtype], what)
        return int(struct.unpack_from(c.order + "I", c.buf, start)[0]) if vtype == 4 else None
    if vtype == _STRING:
        c.string(what)
        return None
    if vtype != _ARRAY:
        raise c.fail(f"{what} has unknown value type {vtype}")
    if depth >= _MAX_NESTING:
        raise c.fail(f"{what} nests arrays deeper than {_MAX_NESTING}")
    itype = c.uint("I", f"{what} item type")
    if itype not in _SCALAR and itype not in (_STRING, _ARRAY):
        raise c.fail(f"{what} has unknown item type {itype}")
    count = c.uint("Q", f"{what} length")
    # every item takes at least this many bytes, so the count is checked before any loop runs
    least = _SCALAR.get(itype, 8 if itype == _STRING else 12)
    c.need(count * least, f"{what} with {count} items")
    if itype in _SCALAR:
        c.skip(count * _SCALAR[itype], what)
        return None
    for i in range(count):
        _value(c, itype, f"{what}[{i}]", depth + 1)
    return None


def check_gguf_file(path: str | os.PathLike[str]) -> None:
    """Raise ``ValueError`` naming the first structural problem of the GGUF at ``path`` (None when sound).

    >>> import os, tempfile
    >>> with tempfile.NamedTemporaryFile(suffix=".gguf", delete=False) as f:
    ...     _ = f.write(b"GGML" + bytes(40))
    >>> try:
    ...     check_gguf_file(f.name)
    ... except ValueError as e:
    ...     print(str(e).split(": ", 1)[1])
    malformed GGUF at byte 0 of 44: wrong magic b'GGML' (a GGUF file starts with b'GGUF')
    >>> os.remove(f.name)
    """
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    name = os.fspath(path)
    size = os.path.getsize(name)
    if size < _HEADER:
        raise ValueError(f"{name}: not a GGUF file: {size} bytes, shorter than the {_HEADER}-byte GGUF header.")
    with open(name, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        c = _Cursor(buf, size, name)
        magic = bytes(buf[:4])
        if magic != b"GGUF":
            raise c.fail(f"wrong magic {magic!r} (a GGUF file starts with b'GGUF')")
        c.pos = 4
        version = c.uint("I", "version")
        if version & 0xFFFF == 0:  # written on a big-endian machine
            c.order = ">"
            version = struct.unpack(">I", struct.pack("<I", version))[0]
        if version not in (2, 3):
            raise c.fail(f"GGUF version {version} (ropekit reads versions 2 and 3)")
        n_tensors = c.uint("Q", "tensor count")
        n_kv = c.uint("Q", "kv count")
        if n_kv * 13 > c.left():  # key length 8 + type 4 + at least one value byte
            raise c.fail(f"kv count {n_kv} cannot fit in the {c.left()} bytes left")
        if n_tensors * 24 > c.left():  # name length 8 + n_dims 4 + type 4 + offset 8
            raise c.fail(f"tensor count {n_tensors} cannot fit in the {c.left()} bytes left")
        alignment, keys = 32, set()
        for i in range(n_kv):
            raw = c.string(f"key {i}")
            try:
                key = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise c.fail(f"key {i} is not UTF-8: {raw[:40]!r}") from None
            if key in keys:
                raise c.fail(f"duplicate key {key!r}")
            keys.add(key)
            vtype = c.uint("I", f"type of {key!r}")
            u32 = _value(c, vtype, f"value of {key!r}")
            if key == "general.alignment":
                if u32 is None or u32 == 0 or u32 & (u32 - 1):
                    raise c.fail("general.alignment must be a uint32 power of two")
                alignment = u32
        tensors, names = [], set()
        for i in range(n_tensors):
            tname = c.string(f"tensor {i} name").decode("utf-8", errors="replace")
            if tname in names:
                raise c.fail(f"duplicate tensor {tname!r}")
            names.add(tname)
            n_dims = c.uint("I", f"tensor {tname!r} n_dims")
            if n_dims > _MAX_DIMS:
                raise c.fail(f"tensor {tname!r} has {n_dims} dims (GGUF allows {_MAX_DIMS})")
            dims = [c.uint("Q", f"tensor {tname!r} dim {j}") for j in range(n_dims)]
            ttype = c.uint("I", f"tensor {tname!r} type")
            try:
                block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ttype)]
            except (ValueError, KeyError):
                raise c.fail(f"tensor {tname!r} has unknown ggml type {ttype}") from None
            offset = c.uint("Q", f"tensor {tname!r} offset")
            n = 1
            for d in dims:
                n *= d
            if dims and dims[0] % block:
                raise c.fail(f"tensor {tname!r}: first dim {dims[0]} is not a multiple of its block size {block}")
            tensors.append((tname, offset, n * type_size // block))
        data = c.pos + (-c.pos % alignment)
        for tname, offset, nbytes in tensors:
            if data + offset + nbytes > size:
                raise c.fail(f"tensor {tname!r} ({nbytes} bytes at data offset {offset}) runs past the end of the file")
