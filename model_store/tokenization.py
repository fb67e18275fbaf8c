"""Turn (prompt, response) pairs into model inputs, identically at training and serving time.

The response is what is being judged, so it always survives truncation: the prompt is
cut from the left (the most recent turns are kept) and only a response that alone is
longer than the budget loses its tail.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from model_store.scoring import TextPair


@dataclass(frozen=True, slots=True)
class TokenizedPair:
    input_ids: np.ndarray  # int64 [T]
    token_type_ids: np.ndarray  # int64 [T]

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


class PairTokenizer:
    """Wraps a Hugging Face `tokenizer.json` with prompt-left truncation."""

    def __init__(self, tokenizer: Tokenizer, max_length: int, pad_id: int = 0) -> None:
        n_special = tokenizer.num_special_tokens_to_add(is_pair=True)
        if max_length <= n_special + 1:
            raise ValueError(
                f"max_length={max_length} leaves no room for text; use at least {n_special + 2}"
            )
        self._tok = tokenizer
        self._tok.no_truncation()
        self._tok.no_padding()
        self.max_length = max_length
        self.pad_id = pad_id
        self._budget = max_length - n_special

    @classmethod
    def from_dir(cls, directory: str | Path, max_length: int) -> "PairTokenizer":
        directory = Path(directory)
        path = directory / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: a backbone folder needs a fast tokenizer (tokenizer.json)"
            )
        tok = Tokenizer.from_file(str(path))
        pad_id = 0
        config = directory / "tokenizer_config.json"
        if config.is_file():
            pad_token = json.loads(config.read_text()).get("pad_token")
            if isinstance(pad_token, dict):
                pad_token = pad_token.get("content")
            if isinstance(pad_token, str) and tok.token_to_id(pad_token) is not None:
                pad_id = int(tok.token_to_id(pad_token))
        return cls(tok, max_length=max_length, pad_id=pad_id)

    def encode(self, pairs: Sequence[TextPair]) -> list[TokenizedPair]:
        if not pairs:
            return []
        prompts = self._tok.encode_batch([p.prompt for p in pairs], add_special_tokens=False)
        responses = self._tok.encode_batch([p.response for p in pairs], add_special_tokens=False)
        out: list[TokenizedPair] = []
        for prompt, response in zip(prompts, responses, strict=True):
            if len(response.ids) > self._budget:
                response.truncate(self._budget, direction="right")
            room = self._budget - len(response.ids)
            if len(prompt.ids) > room:
                prompt.truncate(room, direction="left")
            merged = self._tok.post_process(prompt, response, add_special_tokens=True)
            out.append(
                TokenizedPair(
                    input_ids=np.asarray(merged.ids, dtype=np.int64),
                    token_type_ids=np.asarray(merged.type_ids, dtype=np.int64),
                )
            )
        return out


def pad_batch(items: Sequence[TokenizedPair], pad_id: int = 0) -> dict[str, np.ndarray]:
    """Right-pad to the longest item: input_ids, attention_mask, token_type_ids, all int64 [B, T]."""
    if not items:
        raise ValueError("cannot pad an empty batch")
    width = max(len(it) for it in items)
    n = len(items)
    input_ids = np.full((n, width), pad_id, dtype=np.int64)
    attention_mask = np.zeros((n, width), dtype=np.int64)
    token_type_ids = np.zeros((n, width), dtype=np.int64)
    for row, it in enumerate(items):
        k = len(it)
        input_ids[row, :k] = it.input_ids
        attention_mask[row, :k] = 1
        token_type_ids[row, :k] = it.token_type_ids
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "token_type_ids": token_type_ids,
    }
