"""The llama.cpp engine of ``ropekit doctor``: a GGUF's RoPE (or what the converter writes), then the flags.

llama.cpp reads ``{arch}.rope.*`` keys; Gemma-3's sliding layers take ``rope.freq_base_swa`` (10000) and
ignore the scaling; SmolLM3 / Llama-4 skip RoPE on every 4th layer (no key says so); the flags replace the
base and the scaling of the other layers. Without a GGUF, the converter's output is emulated: scalings GGUF
has no key for (dynamic NTK, proportional) are dropped, static NTK is folded into the base.

>>> from ropekit.doctor.sources import Deployment
>>> dep = Deployment(gguf={"general.architecture": "llama", "llama.embedding_length": 256,
...     "llama.attention.head_count": 4, "llama.rope.freq_base": 1e4, "llama.context_length": 4096})
>>> llama_cpp_view(dep, 4096).plan.single().layout   # NORM mode: the GGUF's q/k are GPT-J pairs
'interleaved'
"""

from __future__ import annotations

import dataclasses
import os
import tempfile

from ropekit.core.config import RopeConfig
from ropekit.core.plan import RopePlan
from ropekit.core.scaling import NTK, YaRN
from ropekit.doctor.engines import _NOPE_EVERY_4, _SWA_TYPE, EngineView, _view, reference_plan
from ropekit.doctor.sources import Deployment
from ropekit.interop.hf_plan import DEFAULT_LAYER_TYPE, text_config

__all__ = ["gguf_plan", "llama_cpp_view"]


def _gguf_config(dep: Deployment) -> RopeConfig:
    """from_gguf of the deployment's GGUF (its file, or its metadata written to a temporary GGUF)."""
    from ropekit.interop.gguf import from_gguf

    if dep.gguf_path is not None:
        return from_gguf(dep.gguf_path)
    import gguf

    kv = dict(dep.gguf or {})
    arch = kv.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise ValueError("GGUF metadata needs general.architecture (a non-empty string).")
    fd, path = tempfile.mkstemp(suffix=".gguf")
    os.close(fd)
    try:
        w = gguf.GGUFWriter(path, arch)
        for key, value in kv.items():
            if key == "general.architecture" or key.startswith("GGUF."):
                continue
            if isinstance(value, bool):
                w.add_bool(key, value)
            elif isinstance(value, str):
                w.add_string(key, value)
            elif isinstance(value, int):
                w.add_uint32(key, value) if 0 <= value < 2**32 else w.add_int64(key, value)
            elif isinstance(value, float):
                w.add_float32(key, value)
            else:
                raise TypeError(f"GGUF metadata {key!r} must be a str, int, float or bool, got {type(value).__name__}.")
        for name, t in dep.gguf_tensors.items():
            import torch

            w.add_tensor(f"{name}.weight", torch.as_tensor(t, dtype=torch.float32).numpy())
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        return from_gguf(path)
    finally:
        os.unlink(path)


def _layer_types(dep: Deployment, arch: str, n_layers: int) -> tuple[str, ...]:
    if dep.hf_config is not None:
        lt = text_config(dep.hf_config).get("layer_types")
        if isinstance(lt, list) and len(lt) == n_layers and all(isinstance(t, str) for t in lt):
            return tuple(lt)
    if arch == "gemma3":  # llama.cpp: 5 sliding layers, then one global
        return tuple(_SWA_TYPE if i % 6 < 5 else "full_attention" for i in range(n_layers))
    return (DEFAULT_LAYER_TYPE,) * n_layers


def _converted(dep: Deployment, facts: dict[str, str]) -> tuple[RopePlan, str]:
    """What convert_hf_to_gguf writes from the HF config: one global RoPE (scalings GGUF cannot hold dropped)."""
    ref = reference_plan(dep)
    mt = str(text_config(dep.hf_config or {}).get("model_type", "llama"))
    arch = {"mistral": "llama", "gemma3_text": "gemma3", "qwen2_moe": "qwen2moe", "qwen3_moe": "qwen3moe"}.get(mt, mt)
    by_type: dict[str, RopeConfig | None] = {}
    for t, cfg in ref.by_type.items():
        if cfg is None:
            by_type[t] = None
            continue
        sc = cfg.scaling
        if isinstance(sc, NTK):  # static NTK is a base change: the converter can fold it
            d = cfg.rotary_dim
            cfg = cfg.replace(base=cfg.base * sc.alpha ** (d / (d - 2)), scaling=None)  # type: ignore[operator]
        elif sc is not None and sc.method in ("dynamic", "proportional"):
            facts["converter_drops"] = f"GGUF has no key for {sc.method!r} scaling; the converter writes none"
            cfg = cfg.replace(scaling=None)
        by_type[t] = cfg
    return dataclasses.replace(ref, by_type=by_type), arch


def gguf_plan(dep: Deployment) -> RopePlan:
    """The GGUF's RoPE laid out per layer the way llama.cpp runs it (no flags applied)."""
    kv = dict(dep.gguf or {})
    arch = str(kv.get("general.architecture"))
    cfg = _gguf_config(dep)
    n = kv.get(f"{arch}.block_count")
    n = n if isinstance(n, int) and not isinstance(n, bool) and 0 < n <= 100_000 else 1
    types = _layer_types(dep, arch, n)
    by_type: dict[str, RopeConfig | None] = {}
    for t in dict.fromkeys(types):
        if arch == "gemma3" and t == _SWA_TYPE:
            by_type[t] = cfg.replace(base=float(kv.get(f"{arch}.rope.freq_base_swa", 10000.0)), scaling=None)
        else:
            by_type[t] = cfg
    nope = frozenset(i for i in range(n) if (i + 1) % 4 == 0) if arch in _NOPE_EVERY_4 else frozenset()
    return RopePlan(layer_types=types, by_type=by_type, nope_layers=nope)


def _ctx_flag(args: tuple[str, ...]) -> tuple[tuple[str, ...], int | None]:
    rest, n_ctx = [], None
    it = iter(range(len(args)))
    for i in it:
        name, eq, val = args[i].partition("=")
        if name in ("-c", "--ctx-size"):
            if not eq:
                if i + 1 >= len(args):
                    raise ValueError(f"llama.cpp flag {name} needs a value.")
                val = args[i + 1]
                next(it, None)
            try:
                n_ctx = int(val)
            except ValueError:
                raise ValueError(f"llama.cpp flag {name} needs an int, got {val!r}.") from None
            if n_ctx < 0:
                raise ValueError(f"llama.cpp flag {name} must be >= 0, got {n_ctx}.")
        else:
            rest.append(args[i])
    return tuple(rest), (n_ctx or None)


def _apply_flags(cfg: RopeConfig, flags: dict[str, str], args: list[str]) -> RopeConfig:
    from ropekit.interop.llama_cpp import from_llama_cpp_args

    scaling_flags = set(flags) - {"--rope-freq-base"}
    base = float(flags["--rope-freq-base"]) if "--rope-freq-base" in flags else cfg.base
    if not scaling_flags:
        return cfg.replace(base=base)
    if "--rope-scaling" not in flags:  # llama.cpp keeps the GGUF's scaling type and takes the new scale
        args = [*args, "--rope-scaling", "yarn" if isinstance(cfg.scaling, YaRN) else "linear"]
    L0 = cfg.original_max_position_embeddings
    new = from_llama_cpp_args(args, head_dim=cfg.head_dim, base=base, rotary_dim=cfg.rotary_dim, layout=cfg.layout,
                              n_ctx_train=L0)
    return new.replace(max_position_embeddings=cfg.max_position_embeddings)


def llama_cpp_view(dep: Deployment, target: int) -> EngineView:
    from ropekit.interop.gguf import GGUF_ARCH_LAYOUT
    from ropekit.interop.llama_cpp import parse_llama_cpp_args

    facts: dict[str, str] = {}
    args, n_ctx = _ctx_flag(dep.llama_cpp_args)
    flags = parse_llama_cpp_args(list(args))
    for name, val in flags.items():
        if name != "--rope-scaling":
            try:
                float(val)
            except ValueError:
                raise ValueError(f"llama.cpp flag {name} needs a number, got {val!r}.") from None

    def build() -> RopePlan:
        if dep.gguf is not None:
            plan = gguf_plan(dep)
            arch = str(dep.gguf.get("general.architecture"))
        else:
            plan, arch = _converted(dep, facts)
        want = GGUF_ARCH_LAYOUT.get(arch)
        facts["arch"] = arch
        by_type = {}
        for t, cfg in plan.by_type.items():
            if cfg is not None and want is not None:
                cfg = cfg.replace(layout=want)  # the converter permutes q/k to the arch's rope mode
            swa = arch == "gemma3" and t == _SWA_TYPE  # llama.cpp's SWA layers ignore the scaling flags
            by_type[t] = cfg if cfg is None or swa else _apply_flags(cfg, flags, list(args))
        return dataclasses.replace(plan, by_type=by_type)

    max_pos = dep.gguf.get(f"{dep.gguf.get('general.architecture')}.context_length") if dep.gguf else None
    if max_pos is None and dep.hf_config is not None:
        max_pos = text_config(dep.hf_config).get("max_position_embeddings")
    return _view("llama.cpp", build, "llama.cpp", n_ctx or target, max_pos, facts, "GGUF architecture")
