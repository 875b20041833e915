"""``ropekit doctor``: what each engine (transformers, vLLM, llama.cpp) really runs for a checkpoint and its
deployment flags, per layer type, and the findings that say what is wrong and how to fix it.

>>> from ropekit.doctor import Deployment, diagnose
>>> dep = Deployment(hf_config={"model_type": "llama", "hidden_size": 256, "num_attention_heads": 4,
...     "num_hidden_layers": 2, "max_position_embeddings": 4096,
...     "rope_parameters": {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0}})
>>> "dynamic-as-static" in diagnose(dep, engines="vllm").codes()
True
"""

from __future__ import annotations

from ropekit.doctor.diagnose import Diagnosis, diagnose, engine_rows
from ropekit.doctor.engines import ENGINES, EngineView, read_engine, reference_plan
from ropekit.doctor.findings import FINDINGS, Finding, FindingSpec
from ropekit.doctor.sources import Deployment, load_deployment

__all__ = [
    "ENGINES", "FINDINGS", "Deployment", "Diagnosis", "EngineView", "Finding", "FindingSpec", "diagnose",
    "engine_rows", "load_deployment", "read_engine", "reference_plan",
]
