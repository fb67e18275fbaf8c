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
from tokenizers import Encoding, Tokenizer

from model_store.scoring import TextPair


@dataclass(frozen=True, slots=True)
class TokenizedPair:
    input_ids: np.ndarray  # int64 [T]
    token_type_ids: np.ndarray  # int64 [T]

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


class PairTokenizer:
    """Wraps a Hugging Face `tokenizer.json` with prompt-left truncation."""

    def __init__(self, tokenizer: Tokenizer, max_length: int, pad_id: int = 0, *, use_template: bool = True) -> None:
        n_special = tokenizer.num_special_tokens_to_add(is_pair=True)
        if max_length <= n_special + 1:
            raise ValueError(
                f"max_length={max_length} leaves no room for text; use at least {n_special + 2}"
            )
        self._tok = tokenizer
        self._tok.no_truncation()
        self._tok.no_padding()
        # encode_batch_fast (tokenizers 0.21+) skips the character offsets, which nothing here
        # reads: about 15% less tokenizing time on HH prompts. Older releases have only encode_batch.
        self._encode_batch = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)
        self.max_length = max_length
        self.pad_id = pad_id
        self._budget = max_length - n_special
        # use_template=False keeps post_process for every pair: the reference the template is
        # tested and benchmarked against.
        self._template = PairTemplate.learn(tokenizer, n_special) if use_template else None

    @classmethod
    def from_dir(cls, directory: str | Path, max_length: int, *, use_template: bool = True) -> PairTokenizer:
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
        return cls(tok, max_length=max_length, pad_id=pad_id, use_template=use_template)

    @property
    def backend(self) -> Tokenizer:
        """The wrapped `tokenizers.Tokenizer` (no truncation, no padding)."""
        return self._tok

    @property
    def uses_template(self) -> bool:
        """Whether pairs are laid out by the learned template (else by `post_process` per pair)."""
        return self._template is not None

    def encode(self, pairs: Sequence[TextPair]) -> list[TokenizedPair]:
        if not pairs:
            return []
        return self.lay_out(*self.encode_sides(pairs))

    def encode_sides(self, pairs: Sequence[TextPair]) -> tuple[list[Encoding], list[Encoding]]:
        """Step one of `encode`: prompts and responses tokenized apart, without special tokens
        (in Rust, which releases the GIL). With the template, each distinct prompt is
        tokenized once: best-of-n and re-ranking send one prompt with many responses, and the
        prompt is usually the longer text."""
        responses = self._encode_batch([p.response for p in pairs], add_special_tokens=False)
        prompts = [p.prompt for p in pairs]
        distinct = list(dict.fromkeys(prompts))
        if self._template is None or len(distinct) == len(prompts):
            # post_process truncates encodings in place: no two of its pairs may share one.
            return self._encode_batch(prompts, add_special_tokens=False), responses
        encoded = dict(zip(distinct, self._encode_batch(distinct, add_special_tokens=False), strict=True))
        return [encoded[prompt] for prompt in prompts], responses

    def lay_out(self, prompts: Sequence[Encoding], responses: Sequence[Encoding]) -> list[TokenizedPair]:
        """Step two of `encode`: each pair cut to the budget and joined with its special tokens
        and token types (Python, holding the GIL)."""
        if self._template is None:
            return [self._post_processed(p, r) for p, r in zip(prompts, responses, strict=True)]
        budget, template = self._budget, self._template
        out: list[TokenizedPair] = []
        for prompt, response in zip(prompts, responses, strict=True):
            response_ids = response.ids  # a new list on every access, so read once
            if len(response_ids) > budget:
                response_ids = response_ids[:budget]
            room = budget - len(response_ids)
            prompt_ids = prompt.ids
            if len(prompt_ids) > room:
                prompt_ids = prompt_ids[len(prompt_ids) - room :]  # keep the latest turns
            out.append(template.apply(prompt_ids, response_ids))
        return out

    def _post_processed(self, prompt: Encoding, response: Encoding) -> TokenizedPair:
        """The general path, for post-processors that `PairTemplate` cannot describe."""
        if len(response.ids) > self._budget:
            response.truncate(self._budget, direction="right")
        room = self._budget - len(response.ids)
        if len(prompt.ids) > room:
            prompt.truncate(room, direction="left")
        merged = self._tok.post_process(prompt, response, add_special_tokens=True)
        return TokenizedPair(
            input_ids=np.asarray(merged.ids, dtype=np.int64),
            token_type_ids=np.asarray(merged.type_ids, dtype=np.int64),
        )


@dataclass(frozen=True, slots=True)
class PairTemplate:
    """Where a tokenizer's post-processor puts its special tokens around a (prompt, response)
    pair, and the token type ids of each part: `prefix + prompt + middle + response + suffix`.

    Laying pairs out is the part of tokenizing that holds the GIL, so one server process
    can do only so much of it however many tokenizer threads it has. With
    `Tokenizer.post_process` (and Encoding.truncate) it cost 33-37 us per HH pair on this
    project's CPUs (60-62 us where the encodings carry character offsets); from this
    template 11-12 us (`python -m loadtest.bench_tokenize`). BERT's, RoBERTa's and most
    TemplateProcessing layouts fit it. `learn` reads it off the post-processor itself and
    keeps it only if it reproduces `post_process` exactly on probe pairs (empty sides too);
    otherwise the tokenizer keeps calling `post_process`.
    """

    prefix: tuple[int, ...]
    middle: tuple[int, ...]
    suffix: tuple[int, ...]
    prefix_types: tuple[int, ...]
    middle_types: tuple[int, ...]
    suffix_types: tuple[int, ...]
    prompt_type: int
    response_type: int

    def apply(self, prompt_ids: list[int], response_ids: list[int]) -> TokenizedPair:
        ids = [*self.prefix, *prompt_ids, *self.middle, *response_ids, *self.suffix]
        types = [
            *self.prefix_types,
            *([self.prompt_type] * len(prompt_ids)),
            *self.middle_types,
            *([self.response_type] * len(response_ids)),
            *self.suffix_types,
        ]
        both = np.array((ids, types), dtype=np.int64)  # one conversion for the two rows
        return TokenizedPair(input_ids=both[0], token_type_ids=both[1])

    @classmethod
    def learn(cls, tokenizer: Tokenizer, n_special: int) -> PairTemplate | None:
        """The template `tokenizer` follows for pairs, or None where it follows none."""
        probes = [tokenizer.encode(text, add_special_tokens=False) for text in _PROBE_TEXTS]
        if len({tuple(e.ids) for e in probes}) < len(probes) or not all(e.ids for e in probes):
            return None  # the probe texts must tokenize, and differently
        first, second = probes[0], probes[1]
        template = cls._read(tokenizer.post_process(first, second, add_special_tokens=True), first.ids, second.ids)
        if template is None or len(template.prefix) + len(template.middle) + len(template.suffix) != n_special:
            return None
        empty = tokenizer.encode("", add_special_tokens=False)
        for prompt, response in ((probes[2], probes[3]), (empty, probes[3]), (probes[2], empty), (empty, empty)):
            expected = tokenizer.post_process(prompt, response, add_special_tokens=True)
            laid_out = template.apply(prompt.ids, response.ids)
            if laid_out.input_ids.tolist() != expected.ids or laid_out.token_type_ids.tolist() != expected.type_ids:
                return None
        return template

    @classmethod
    def _read(cls, merged: Encoding, prompt: list[int], response: list[int]) -> PairTemplate | None:
        """Split `merged` (post_process of `prompt` and `response`) around the two, if exactly
        one layout fits and each side has one token type."""
        ids, types = merged.ids, merged.type_ids
        n_special = len(ids) - len(prompt) - len(response)
        layouts = [
            (p_start, r_start)
            for p_start in range(n_special + 1)
            for r_start in range(p_start + len(prompt), n_special + len(prompt) + 1)
            if ids[p_start : p_start + len(prompt)] == prompt and ids[r_start : r_start + len(response)] == response
        ]
        if len(layouts) != 1:
            return None
        p_start, r_start = layouts[0]
        p_end, r_end = p_start + len(prompt), r_start + len(response)
        prompt_types, response_types = set(types[p_start:p_end]), set(types[r_start:r_end])
        if len(prompt_types) != 1 or len(response_types) != 1:
            return None
        return cls(
            prefix=tuple(ids[:p_start]),
            middle=tuple(ids[p_end:r_start]),
            suffix=tuple(ids[r_end:]),
            prefix_types=tuple(types[:p_start]),
            middle_types=tuple(types[p_end:r_start]),
            suffix_types=tuple(types[r_end:]),
            prompt_type=prompt_types.pop(),
            response_type=response_types.pop(),
        )


# Texts that every vocabulary splits into a few tokens, differently from each other.
_PROBE_TEXTS = ("one two", "hello there, world", "a b c d e", "yes")


def pad_batch(items: Sequence[TokenizedPair], pad_id: int = 0, width_multiple: int = 1) -> dict[str, np.ndarray]:
    """Right-pad to the longest item, rounded up to `width_multiple`: input_ids,
    attention_mask, token_type_ids, all int64 [B, T]."""
    if not items:
        raise ValueError("cannot pad an empty batch")
    if width_multiple < 1:
        raise ValueError(f"width_multiple must be at least 1, got {width_multiple}")
    width = -(-max(len(it) for it in items) // width_multiple) * width_multiple
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
