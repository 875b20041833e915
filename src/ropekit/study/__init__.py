"""Train short, test long: small decoder LMs with pluggable position encodings, evaluated past L.

>>> from ropekit.study import DecoderLM, ModelConfig
>>> model = DecoderLM(ModelConfig(d_model=32, n_layers=1, n_heads=2, encoding="rope"))

See ``ropekit study --help`` and :func:`ropekit.study.runner.run_study`.
"""

from ropekit.study.data import Corpus, load_corpus
from ropekit.study.encodings import ENCODINGS, EVAL_SCALINGS, alibi_slopes, make_encoding, sinusoidal_table
from ropekit.study.model import DecoderLM, ModelConfig
from ropekit.study.runner import RUN_NAMES, StudyConfig, run_study
from ropekit.study.train import TrainConfig  # `train` stays reachable as ropekit.study.train.train

__all__ = [
    "ENCODINGS",
    "EVAL_SCALINGS",
    "RUN_NAMES",
    "Corpus",
    "DecoderLM",
    "ModelConfig",
    "StudyConfig",
    "TrainConfig",
    "alibi_slopes",
    "load_corpus",
    "make_encoding",
    "run_study",
    "sinusoidal_table",
]
