"""ONNX Runtime engine for the linear reward model (featurizer.json + model.onnx).

`encode` featurizes each pair with the same `Featurizer` that training used; `run`
stacks the rows and makes one ONNX call: scores = features @ w + b.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from model_store.features import Featurizer, words
from model_store.onnx_scorer import session_options
from model_store.scoring import BaseScorer, Encoded, TextPair

FEATURIZER_FILE = "featurizer.json"
MODEL_FILE = "model.onnx"
# Counted like a transformer's [CLS] ... [SEP] ... [SEP], so that the batcher's token
# budget means roughly the same thing for both kinds of model.
_SPECIAL_TOKENS = 3


def _load_featurizer(path: Path) -> Featurizer:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: a linear model folder needs {FEATURIZER_FILE}")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from exc
    try:
        return Featurizer.from_config(config)
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"{path}: {exc}") from exc


class LinearOnnxScorer(BaseScorer):
    """Featurize with the stored featurizer, run the stored linear ONNX graph."""

    def __init__(
        self,
        model_dir: Path,
        name: str,
        version: str,
        intra_op_threads: int | None = None,
        spinning: bool = False,
    ) -> None:
        model_dir = Path(model_dir)
        self.name = name
        self.version = version
        self.featurizer = _load_featurizer(model_dir / FEATURIZER_FILE)
        onnx_path = model_dir / MODEL_FILE
        if not onnx_path.is_file():
            raise FileNotFoundError(f"{onnx_path} not found: a linear model folder needs {MODEL_FILE}")
        self._session = ort.InferenceSession(
            str(onnx_path),
            sess_options=session_options(intra_op_threads, spinning),
            providers=["CPUExecutionProvider"],
        )
        (model_input,) = self._session.get_inputs()
        self._input = model_input.name
        self._output = self._session.get_outputs()[0].name
        width = model_input.shape[-1]
        if width != self.featurizer.n_features:
            raise ValueError(
                f"{onnx_path} expects {width} features per item but {model_dir / FEATURIZER_FILE} "
                f"makes {self.featurizer.n_features}: the two files come from different models"
            )

    def encode(self, pairs: Sequence[TextPair]) -> list[Encoded]:
        rows = self.featurizer.transform(pairs)
        return [
            Encoded(
                n_tokens=len(words(p.prompt)) + len(words(p.response)) + _SPECIAL_TOKENS,
                payload=row,
            )
            for p, row in zip(pairs, rows, strict=True)
        ]

    def _run(self, batch: Sequence[Encoded]) -> np.ndarray:
        features = np.stack([e.payload for e in batch]).astype(np.float32, copy=False)
        (scores,) = self._session.run([self._output], {self._input: features})
        return scores

    def close(self) -> None:
        self._session = None  # type: ignore[assignment]
