"""Every scaling class x every dialect (x both layouts x full/partial rotary): written and read back to the
same config, or to another exact form of it, or refused with a ValueError naming the method and the dialect."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch

import ropekit
from ropekit.core.scaling import Scaling
from ropekit.interop import dialects, from_hf, from_llama_cpp_args, from_vllm, to_hf, to_llama_cpp_args, to_vllm
from ropekit.interop.gguf import from_gguf, from_gguf_metadata
from ropekit.interop.gguf_write import to_gguf_metadata, to_gguf_tensors, write_gguf_rope

HD = 64


def scaling_classes() -> list[type[Scaling]]:
    """Every Scaling subclass ropekit defines, found by walking the class tree (a new one is picked up)."""
    out, todo = [], list(Scaling.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__module__.startswith("ropekit."):
            out.append(cls)
    return sorted(out, key=lambda c: c.method)


def _examples(cls: type[Scaling], rd: int) -> list[tuple[str, Scaling, int]]:
    """(id, scaling, max_position_embeddings) per class, values exact in float32; ``rd`` = rotary_dim."""
    n = rd // 2
    long, short = tuple(1.0 + i / 8 for i in range(n)), tuple(1.0 + i / 64 for i in range(n))
    table: dict[str, list[tuple[str, Scaling, int]]] = {
        "linear": [("linear", ropekit.Linear(factor=4.0), 8192)],
        "ntk": [("ntk", ropekit.NTK(alpha=4.0), 8192)],
        "dynamic": [("dynamic", ropekit.DynamicNTK(factor=2.0, original_max_position_embeddings=4096), 4096)],
        "yarn": [
            ("yarn", ropekit.YaRN(factor=4.0, original_max_position_embeddings=4096), 16384),
            ("yarn_attn", ropekit.YaRN(factor=8.0, original_max_position_embeddings=8192, beta_fast=16.0,
                                       beta_slow=2.0, attention_factor=1.25), 65536),
            ("yarn_deepseek", ropekit.YaRN(factor=40.0, original_max_position_embeddings=4096, mscale=1.0,
                                           mscale_all_dim=1.0), 163840),
            ("yarn_notrunc", ropekit.YaRN(factor=32.0, original_max_position_embeddings=4096, truncate=False), 131072),
        ],
        "longrope": [
            ("longrope", ropekit.LongRoPE(short_factor=short, long_factor=long, factor=32.0,
                                          original_max_position_embeddings=4096), 131072),
            ("longrope_nofactor", ropekit.LongRoPE(short_factor=short, long_factor=long,
                                                   original_max_position_embeddings=4096), 131072),
        ],
        "llama3": [("llama3", ropekit.Llama3(factor=8.0, original_max_position_embeddings=8192), 131072)],
        "proportional": [("proportional", ropekit.Proportional(partial_rotary_factor=0.25), 8192)],
    }
    return table[cls.method]


def _configs() -> list[tuple[str, ropekit.RopeConfig]]:
    out = [("default-half-full", ropekit.RopeConfig(head_dim=HD, base=10000.0, max_position_embeddings=8192))]
    for cls in scaling_classes():
        for layout in ("half", "interleaved"):
            for prf in (1.0, 0.5):
                if cls is ropekit.Proportional and prf != 1.0:
                    continue  # proportional carries its own fraction and rotates the whole head
                for name, sc, max_pos in _examples(cls, int(HD * prf)):
                    cfg = ropekit.RopeConfig(head_dim=HD, base=500000.0, layout=layout, partial_rotary_factor=prf,
                                             max_position_embeddings=max_pos, scaling=sc)
                    out.append((f"{name}-{layout}-{'full' if prf == 1 else 'partial'}", cfg))
    return out


def _hf(cfg: ropekit.RopeConfig, legacy: bool) -> ropekit.RopeConfig:
    d = to_hf(cfg, legacy=legacy, model_type="gptj" if cfg.layout == "interleaved" else None)
    return from_hf(json.loads(json.dumps(d)))  # what a config.json holds


def _gguf(cfg: ropekit.RopeConfig) -> ropekit.RopeConfig:
    arch = "llama" if cfg.layout == "interleaved" else "qwen2"  # NORM / NEOX mode
    kv = {"general.architecture": arch, f"{arch}.attention.key_length": cfg.head_dim, **to_gguf_metadata(cfg, arch)}
    return from_gguf_metadata(kv, to_gguf_tensors(cfg))


def _llama_cpp(cfg: ropekit.RopeConfig) -> ropekit.RopeConfig:
    back = from_llama_cpp_args(to_llama_cpp_args(cfg), head_dim=cfg.head_dim, rotary_dim=cfg.rotary_dim,
                               layout=cfg.layout)
    return back.replace(max_position_embeddings=cfg.max_position_embeddings)  # flags carry no context length


ROUND_TRIPS = {
    "hf": lambda c: _hf(c, False),
    "hf-legacy": lambda c: _hf(c, True),
    "gguf": _gguf,
    "llama.cpp": _llama_cpp,
    "vllm": lambda c: from_vllm(to_vllm(c)),
}

#: (example, dialect) pairs that may come back in another exact form (equal frequencies), and why
FORM_CHANGES = {
    ("ntk", "llama.cpp"): "folded into --rope-freq-base, read back as 'default'",
    ("yarn_attn", "llama.cpp"): "attention factor as --yarn-attn-factor a / g(s), read back times g(s): rounding",
    ("yarn_attn", "vllm"): "attention factor as attn_factor a / g(s), read back times g(s): rounding",
    ("yarn_deepseek", "llama.cpp"): "the mscale ratio becomes its effective attention factor",
    ("longrope_nofactor", "gguf"): "the reader derives factor = context_length / L0; the attention factor is pinned",
    ("longrope_nofactor", "hf"): "HF derives factor = max_position_embeddings / L0; the attention factor is pinned",
    ("longrope_nofactor", "vllm"): "vLLM derives factor = max_position / L0; short/long_mscale pin the factor",
}


def _seq_lens(cfg: ropekit.RopeConfig) -> list[int | None]:
    L0 = cfg.original_max_position_embeddings or 4096
    return [None, L0 // 2, L0, L0 + 1, 4 * L0]


def _assert_equivalent(back: ropekit.RopeConfig, cfg: ropekit.RopeConfig) -> None:
    assert (back.head_dim, back.rotary_dim, back.layout) == (cfg.head_dim, cfg.rotary_dim, cfg.layout)
    for seq_len in _seq_lens(cfg):
        torch.testing.assert_close(back.inv_freq(seq_len), cfg.inv_freq(seq_len), rtol=1e-12, atol=0)
    assert math.isclose(back.attention_factor, cfg.attention_factor, rel_tol=1e-12)


CONFIGS = _configs()


@pytest.mark.parametrize("dialect", sorted(ROUND_TRIPS))
@pytest.mark.parametrize(("cid", "cfg"), CONFIGS, ids=[c for c, _ in CONFIGS])
def test_round_trip_or_refusal(cid, cfg, dialect):
    name = cid.split("-")[0]
    table = "hf" if dialect == "hf-legacy" else dialect
    try:
        back = ROUND_TRIPS[dialect](cfg)
    except ValueError as e:
        msg = str(e)
        assert f"method {cfg.method!r}" in msg and f"dialect {table!r}" in msg, msg
        return
    assert dialects.codec(cfg.method, table).write is not None  # a refused cell never writes
    if (name, table) in FORM_CHANGES:
        _assert_equivalent(back, cfg)
    else:
        assert back == cfg


@pytest.mark.parametrize("dialect", ["hf", "gguf", "llama.cpp", "vllm"])
def test_plain_examples_are_written_where_the_registry_has_a_writer(dialect):
    """The first example of each method round-trips wherever a writer is registered (the matrix is not vacuous)."""
    written = set(dialects.written_methods(dialect))
    for cls in scaling_classes():
        _, sc, max_pos = _examples(cls, HD)[0]
        cfg = ropekit.RopeConfig(head_dim=HD, base=500000.0, max_position_embeddings=max_pos, scaling=sc)
        if cls.method in written:
            ROUND_TRIPS[dialect](cfg)
        else:
            with pytest.raises(ValueError, match=f"method '{cls.method}' cannot be written to dialect '{dialect}'"):
                ROUND_TRIPS[dialect](cfg)


def test_every_method_has_an_explicit_cell_in_every_dialect():
    methods = {"default"} | {cls.method for cls in scaling_classes()}
    for dialect, cells in dialects.DIALECTS.items():
        assert set(cells) == methods, (dialect, methods ^ set(cells))
    assert {cls.method for cls in scaling_classes()} <= set(ropekit.core.scaling.SCALING_CLASSES)


def test_a_missing_entry_is_refused_naming_method_and_dialect(monkeypatch):
    cfg = ropekit.RopeConfig(head_dim=HD, layout="interleaved", scaling=ropekit.Linear(factor=2.0))
    with pytest.raises(ValueError, match="method 'linear' cannot be written to dialect 'hf'.*writes \\['default'\\]"):
        dialects.writer("linear", "hf", {"hf": {"default": dialects.DIALECTS["hf"]["default"]}})
    writers = {"hf": lambda c: to_hf(c, model_type="gptj"), "gguf": lambda c: to_gguf_metadata(c, "llama"),
               "llama.cpp": to_llama_cpp_args, "vllm": to_vllm}
    for dialect, write in writers.items():
        write(cfg)  # registered: fine
        with monkeypatch.context() as m:
            m.delitem(dialects.DIALECTS[dialect], "linear")
            with pytest.raises(ValueError, match=f"method 'linear' cannot be written to dialect '{dialect}'"):
                write(cfg)


def test_a_new_scaling_class_without_entries_is_refused_everywhere():
    @dataclass(frozen=True, kw_only=True)
    class Fancy(Scaling):
        method: ClassVar[str] = "fancy"

    cfg = ropekit.RopeConfig(head_dim=HD, scaling=Fancy())
    for dialect, write in {"hf": to_hf, "gguf": lambda c: to_gguf_metadata(c, "qwen2"), "llama.cpp": to_llama_cpp_args,
                           "vllm": to_vllm}.items():
        with pytest.raises(ValueError, match=f"method 'fancy' cannot be written to dialect '{dialect}'"):
            write(cfg)
    with pytest.raises(ValueError, match="method 'fancy' cannot be written to dialect 'gguf'"):
        to_gguf_tensors(cfg)


def test_codec_needs_a_writer_or_a_reason():
    with pytest.raises(ValueError, match="exactly one"):
        dialects.Codec(read=None, write=None)
    with pytest.raises(ValueError, match="exactly one"):
        dialects.Codec(read=None, write=to_vllm, refused="no")


def test_scaling_from_factor_refuses_unknown_names():
    with pytest.raises(ValueError, match="'llama3'"):
        ropekit.scaling_from_factor("longrope", 2.0, original_max_position_embeddings=8)
    for method in ropekit.core.scaling.FACTOR_METHODS:
        sc = ropekit.scaling_from_factor(method, 2.0, original_max_position_embeddings=8)
        assert (sc is None) == (method == "none") and (sc is None or sc.method == method)


def test_folded_ntk_notes_and_a_real_gguf_file(tmp_path):
    import gguf

    cfg = ropekit.RopeConfig(head_dim=HD, base=10000.0, layout="half", max_position_embeddings=8192,
                             scaling=ropekit.NTK(alpha=4.0))
    assert dialects.notes(cfg, "gguf") and dialects.notes(cfg, "llama.cpp") and not dialects.notes(cfg, "vllm")
    md = to_gguf_metadata(cfg, "qwen2")
    assert md["qwen2.rope.freq_base"] == 10000.0 * 4.0 ** (HD / (HD - 2))  # what llama.cpp reads
    w = gguf.GGUFWriter(str(tmp_path / "ntk.gguf"), "qwen2")
    w.add_key_length(HD)
    write_gguf_rope(w, cfg)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    assert from_gguf(tmp_path / "ntk.gguf") == cfg  # float32 freq_base, restored from the ropekit keys
    edited = {"general.architecture": "qwen2", "qwen2.attention.key_length": HD, **md, "qwen2.rope.freq_base": 5e4}
    with pytest.raises(ValueError, match="edited"):
        from_gguf_metadata(edited)
