"""A zoo of tiny random Hugging Face causal LMs, one per model type that uses rotary embeddings.

Built from each type's own config class (``AutoConfig.for_model``) by shrinking its size fields, so no
download is needed and every installed RoPE architecture can be exercised in tests within seconds.

Which types count (:func:`rope_model_types`): the type has a causal-LM class in
``MODEL_FOR_CAUSAL_LM_MAPPING_NAMES`` and the module that defines its *text* decoder defines an
``nn.Module`` subclass named ``*RotaryEmbedding`` whose name does not mark it as a vision/audio tower.
"The text decoder's module" is the causal-LM class's own module, or, for wrappers that build their
language model with ``AutoModel.from_config(config.text_config)`` (fuyu, got_ocr2, ...), the module of
the text sub-config's type. A loose ``apply_rotary_pos_emb`` helper is not enough: jamba and nemotron_h
copy it but never rotate anything.

>>> from ropekit.patching.zoo import tiny_model, probe
>>> model, config = tiny_model("llama")
>>> prefill, step = probe(model)
>>> tuple(prefill.shape), config.num_hidden_layers
((1, 11, 256), 2)
"""

from __future__ import annotations

import inspect
import sys
from functools import cache, lru_cache
from typing import Any

import torch

from ropekit.patching.verify import cache_kwargs, returned_cache

__all__ = ["PROBE_TOKENS", "probe", "rope_model_types", "text_config_of", "tiny_config", "tiny_model"]

#: Fixed prompt for :func:`probe`: 12 ordinary ids, clear of the low/high ids configs reserve as specials.
PROBE_TOKENS: tuple[int, ...] = (17, 42, 99, 7, 128, 64, 33, 200, 5, 77, 150, 11)

_VOCAB = 256
_NAME_MARKS_OTHER_TOWER = ("vision", "audio", "visual", "speech", "depth")

# Size fields shrunk wherever a config (or any of its sub-configs) has them with a non-None value.
# Kept consistent with each other: 4 heads x 16 = 64, 2 kv heads, MLA rope 8 + nope 8 = head 16.
_SIZES: dict[str, int] = {
    "vocab_size": _VOCAB,
    "hidden_size": 64,
    "d_model": 64,
    "n_embd": 64,
    "intermediate_size": 128,
    "ffn_hidden_size": 128,
    "num_attention_heads": 4,
    "n_head": 4,
    "n_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "global_head_dim": 32,  # gemma4: full-attention layers use wider heads
    "kv_channels": 16,  # jetmoe head width
    "max_position_embeddings": 2048,
    "moe_intermediate_size": 32,
    "expert_ffn_hidden_size": 32,
    "shared_experts_intermediate_size": 32,
    "shared_intermediate_size": 32,
    "dense_intermediate_size": 128,
    "intermediate_size_mlp": 128,
    "ffn_dim": 128,
    "vocab_size_per_layer_input": _VOCAB,
    "o_lora_rank": 32,
    "shared_expert_intermediate_size": 32,
    "expert_intermediate_size": 32,
    "num_experts": 4,
    "num_local_experts": 4,
    "n_routed_experts": 4,
    "moe_num_experts": 4,
    "num_experts_per_tok": 2,
    "moe_topk": 2,
    "moe_k": 2,
    "n_shared_experts": 1,
    "num_shared_experts": 1,
    "n_group": 1,
    "num_expert_group": 1,
    "num_experts_per_token": 2,
    "n_layers": 2,
    "topk_group": 1,
    "q_lora_rank": 32,
    "kv_lora_rank": 32,
    "qk_rope_head_dim": 8,
    "qk_nope_head_dim": 8,
    "v_head_dim": 16,
    "rotary_dim": 8,  # gptj/codegen: half of head_dim, so partial rotation stays partial
    "adapter_in_dim": 64,
    "adapter_input_size": 64,
    "adapter_out_dim": 64,  # dots3_note: an adapter's input is the text hidden size
    "sliding_window": 8,  # shorter than the probe, so sliding layers really slide
    "attention_chunk_size": 8,  # llama4 chunked attention, also shorter than the probe
    "attention_window_size": 8,  # recurrent_gemma local attention
}

# model_type -> extra kwargs where generic shrinking is not enough (mostly: put an attention layer in the tiny stack).
# Sizes a few configs leave None and their modules then cannot derive (hunyuan, ministral, nemotron).
_FILL_NONE = frozenset({"head_dim", "num_key_value_heads"})

# 4 sliding + 1 full layer; sparse and dense MLPs in 5 layers (stock: 10 sparse first, which needs 15); no KV
# sharing, since 5 layers cannot both produce and reuse every layer type's KV.
_GEMMA3N_TEXT = {
    "num_hidden_layers": 5,
    "activation_sparsity_pattern": [0.95, 0.0, 0.95, 0.0, 0.0],
    "num_kv_shared_layers": 0,
}
_QSA = {"indexer_n_heads": 2, "indexer_kv_heads": 1, "indexer_head_dim": 16}  # qwen4_exp's sparse-attention indexer

_PER_TYPE: dict[str, dict[str, Any]] = {
    "bamba": {"attn_layer_indices": [1]},  # default stack is all Mamba
    "zamba2": {"use_mem_rope": True},  # RoPE in the shared attention block is off by default
    "granitemoehybrid": {"position_embedding_type": "rope", "layer_types": ["linear_attention", "full_attention"]},
    "deepseek_v2": {"num_experts_per_tok": 2},  # default None
    "dots1": {"n_routed_experts": 4, "n_shared_experts": 1, "num_experts_per_tok": 2},  # defaults are None
    "lfm2_moe": {"layer_types": ["conv", "full_attention"]},  # default None
    "zaya": {"num_experts_per_tok": 1},  # the only value its config accepts
    "qwen4_exp": {"indexer_budget": 8, "indexer_compress_ratio": 4, **_QSA},
    "qwen4_exp_text": {"indexer_budget": 8, "indexer_compress_ratio": 4, **_QSA},
    "gemma3n_text": _GEMMA3N_TEXT,
    "gemma3n": {"text_config": _GEMMA3N_TEXT},
    "dbrx": {"attn_config": {"kv_n_heads": 1, "rope_theta": 10000.0, "clip_qkv": 8.0}},  # read unguarded
    "dory": {"n_input_layers": 1, "n_output_layers": 1},  # 4 layers: 1 in, 2 looped, 1 out
    # Per-layer-type RoPE whose default is empty: one rotated (sliding) and one NoPE (full) layer type.
    "cohere_compass_text": {
        "layer_types": ["sliding_attention", "full_attention"],
        "rope_parameters": {"sliding_attention": {"rope_type": "default", "rope_theta": 1e4}, "full_attention": None},
    },
}


def _transformers() -> Any:
    import transformers

    return transformers


def _causal_lm_names() -> dict[str, str]:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return dict(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)


def _class_module(class_name: str) -> Any:
    cls = getattr(_transformers(), class_name)
    return sys.modules[cls.__module__]


def _text_rotary_classes(module: Any) -> list[str]:
    return sorted(
        name
        for name, obj in vars(module).items()
        if inspect.isclass(obj)
        and issubclass(obj, torch.nn.Module)
        and obj.__module__ == module.__name__
        and name.endswith("RotaryEmbedding")
        and not any(mark in name.lower() for mark in _NAME_MARKS_OTHER_TOWER)
    )


def _decoder_modules(model_type: str) -> list[Any]:
    """The causal-LM class's module, plus the text sub-config type's module when the class wraps one."""
    mods = [_class_module(_causal_lm_names()[model_type])]
    try:
        default = _default_config(model_type)
    except Exception:  # the config rejects its own defaults (gemma4_assistant): judge the class alone
        return mods
    text_cfg = getattr(default, "text_config", None)
    sub_type = getattr(text_cfg, "model_type", None)
    if sub_type and sub_type != model_type:
        from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

        base = MODEL_MAPPING_NAMES.get(sub_type)
        if base:
            mods.append(_class_module(base))
    return mods


@cache
def _default_config(model_type: str) -> Any:
    return _transformers().AutoConfig.for_model(model_type)


@lru_cache(maxsize=1)
def _rope_model_types() -> tuple[str, ...]:
    found = []
    for model_type in sorted(_causal_lm_names()):
        try:
            mods = _decoder_modules(model_type)
        except ImportError:  # an optional backend of this type is not installed: it cannot run here anyway
            continue
        if any(_text_rotary_classes(m) for m in mods):
            found.append(model_type)
    return tuple(found)


def rope_model_types() -> list[str]:
    """Every installed causal-LM ``model_type`` whose text decoder uses rotary embeddings (sorted).

    >>> "llama" in rope_model_types() and "gpt2" not in rope_model_types()
    True
    """
    return list(_rope_model_types())


def _check_type(model_type: str) -> None:
    if not isinstance(model_type, str):
        raise TypeError(f"model_type must be a str, got {type(model_type).__name__}")
    if model_type not in _rope_model_types():
        raise ValueError(f"model_type {model_type!r} is not a RoPE causal LM here; allowed: {rope_model_types()}")


def _is_index_list(value: Any, n_layers: int) -> bool:
    """A sorted list of layer indices (``moe_layers``, ``hybrid_layer_ids`` ...), not one entry per layer."""
    if not isinstance(value, list) or not value:
        return False
    if not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n_layers for i in value):
        return False
    return value == sorted(set(value)) and (len(value) < n_layers or len(value) > 4)


def _names_layers(key: str) -> bool:
    return not key.startswith("_") and any(w in key for w in ("layer", "_ids", "_idx", "indices"))


def _per_layer_fields(config: Any) -> dict[str, list[Any]]:
    """Lists with one entry per layer that describe its kind (few distinct values), e.g. ``layer_types``."""
    n = getattr(config, "num_hidden_layers", None)
    if not isinstance(n, int):
        return {}
    return {
        k: v
        for k, v in vars(config).items()
        if isinstance(v, list) and len(v) == n and not k.startswith("_") and not _is_index_list(v, n)
        and len({repr(x) for x in v}) <= 4
    }


def _layer_count(config: Any) -> int:
    """Shortest prefix of the default layer stack that holds one layer of every kind (at least 2)."""
    lists = list(_per_layer_fields(config).values())
    # A short ``*_types`` pattern (recurrent_gemma's block_types) is cycled over the layers: keep one cycle.
    cycle = max(
        (len(v) for k, v in vars(config).items() if k.endswith("types") and isinstance(v, list) and v not in lists),
        default=2,
    )
    if not lists:
        return max(2, cycle)
    rows = [tuple(repr(col[i]) for col in lists) for i in range(len(lists[0]))]
    kinds = set(rows)
    seen: set[tuple[str, ...]] = set()
    for i, row in enumerate(rows):
        seen.add(row)
        if seen == kinds:
            return max(2, cycle, i + 1)
    return len(rows)


def _shrunk_kwargs(config: Any, n_layers: int | None) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    fields = vars(config)
    for name, value in _SIZES.items():
        current = fields.get(name)
        if (isinstance(current, int) and not isinstance(current, bool)) or (name in _FILL_NONE and name in fields):
            kw[name] = value
    if "qk_rope_head_dim" in kw:  # MLA: head_dim is read as the rotary width; keys are never shared by groups
        if "head_dim" in kw:
            kw["head_dim"] = kw["qk_rope_head_dim"]
        if "num_key_value_heads" in kw:
            kw["num_key_value_heads"] = kw.get("num_attention_heads", 4)
    n_default = fields.get("num_hidden_layers")
    if isinstance(n_default, int):
        n = n_layers if n_layers is not None else _layer_count(config)
        kw["num_hidden_layers"] = n
        for key, col in _per_layer_fields(config).items():
            # Cut from the long stock stack, so a larger requested count still gets a valid list; a per-layer size
            # (gemma3n's intermediate_size) is shrunk like the scalar one.
            kw[key] = [_SIZES[key]] * n if key in _SIZES else col[:n]
        for key, value in fields.items():
            if key not in kw and _names_layers(key) and _is_index_list(value, n_default):
                kw[key] = [i for i in value if i < n]
    vocab = kw.get("vocab_size", fields.get("vocab_size"))
    if isinstance(vocab, int):
        # Special ids past the shrunk vocabulary are moved to its top end (distinct, above PROBE_TOKENS).
        spare = vocab - 1
        for key, value in sorted(fields.items()):
            if (key.endswith("_token_id") or key.endswith("_token_index")) and isinstance(value, int):
                if value >= vocab:
                    kw[key] = spare
                    spare -= 1
    for key, value in fields.items():
        if isinstance(value, _transformers().PretrainedConfig) and not key.startswith("_"):
            kw[key] = _shrink(value).to_dict()
    return kw


def _shrink(config: Any, **overrides: Any) -> Any:
    extras = (_PER_TYPE.get(getattr(config, "model_type", ""), {}), overrides)
    n_layers = next((e["num_hidden_layers"] for e in reversed(extras) if "num_hidden_layers" in e), None)
    kw = _shrunk_kwargs(config, n_layers)
    for extra in extras:
        for key, value in extra.items():
            # A dict for a sub-config refines its shrunk version instead of replacing it.
            kw[key] = {**kw[key], **value} if isinstance(value, dict) and isinstance(kw.get(key), dict) else value
    return type(config)(**kw)


def tiny_config(model_type: str, **overrides: Any) -> Any:
    """A tiny random-init-ready config of ``model_type``: hidden 64, 4 heads (2 kv), vocab 256, few layers.

    Keeps one layer of every kind the type has (sliding/full, linear/full, NoPE/RoPE ...) and
    ``max_position_embeddings=2048`` so context scalings make sense. ``overrides`` go to the config class.

    >>> config = tiny_config("gemma3_text")
    >>> sorted(set(config.layer_types)), config.hidden_size
    (['full_attention', 'sliding_attention'], 64)
    """
    _check_type(model_type)
    config = _shrink(_default_config(model_type), **overrides)
    config._attn_implementation = "eager"  # deterministic, and every architecture supports it
    return config


def text_config_of(config: Any) -> Any:
    """The config the rotary embedding reads: ``config.text_config`` for composite models, else ``config``."""
    sub = getattr(config, "text_config", None)
    return sub if sub is not None else config


def tiny_model(
    model_type: str, seed: int = 0, dtype: torch.dtype = torch.float32, **overrides: Any
) -> tuple[Any, Any]:
    """``(model, config)``: the type's ``AutoModelForCausalLM`` on CPU in eval mode, weights from ``seed``.

    >>> model, config = tiny_model("qwen3")
    >>> model.training
    False
    """
    if not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    config = tiny_config(model_type, **overrides)
    torch.manual_seed(seed)
    model = _transformers().AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model.to("cpu").eval(), config


@torch.no_grad()
def probe(model: Any, tokens: tuple[int, ...] = PROBE_TOKENS) -> tuple[torch.Tensor, torch.Tensor]:
    """Prefill ``tokens[:-1]`` with a cache, then decode ``tokens[-1]``: ``(prefill_logits, step_logits)``.

    Shapes ``(1, len(tokens) - 1, vocab)`` and ``(1, 1, vocab)``; both should be finite for a sane model.

    >>> prefill, step = probe(tiny_model("llama")[0])
    >>> bool(prefill.isfinite().all() and step.isfinite().all()), tuple(step.shape)
    (True, (1, 1, 256))
    """
    if len(tokens) < 2:
        raise ValueError(f"tokens must hold at least 2 ids, got {len(tokens)}")
    ids = torch.tensor([list(tokens)], dtype=torch.long)
    first = model(input_ids=ids[:, :-1], use_cache=True)
    cache = returned_cache(first)
    if cache is None:  # recurrent_gemma keeps its cache inside its modules and is told where it is instead
        step = torch.tensor([ids.shape[1] - 1])
        second = model(input_ids=ids[:, -1:], cache_position=step, use_cache=True)
    else:
        second = model(input_ids=ids[:, -1:], use_cache=True, **cache_kwargs(model, cache))
    return first.logits, second.logits

