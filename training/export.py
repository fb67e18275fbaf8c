"""Export a trained transformer reward model to a store-ready folder, and gate it on parity.

Folder layout (what `model_store.loading` expects):
    model.onnx          fp32 graph, dynamic batch and sequence axes -> "scores" [batch]
    model.int8.onnx     optional per-token int8 quantisation (training/quantize.py)
    tokenizer/          the backbone's tokenizer files
    torch/              config + weights, for the torch (GPU) engine
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from model_store.engines.torch_engine import TorchScorer
from model_store.engines.torch_model import RewardModel
from model_store.onnx_scorer import TransformerOnnxScorer
from model_store.scoring import TextPair
from model_store.tokenization import PairTokenizer, pad_batch
from training.evaluate import pairwise_accuracy
from training.quantize import RECIPE as INT8_RECIPE
from training.quantize import quantize_per_token

ONNX_OPSET = 17
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "sentencepiece.bpe.model",
    "spiece.model",
)


class ParityError(RuntimeError):
    """The exported graph disagrees with the torch model beyond tolerance."""


@dataclass(frozen=True)
class ParityReport:
    n_items: int
    n_pairs: int
    max_abs_diff: float
    decision_agreement: float | None  # None: no pairs, so no decisions to agree on
    atol: float

    @property
    def passed(self) -> bool:
        # Without pairs only the scores can be compared: they must still be within atol.
        return self.max_abs_diff <= self.atol and self.decision_agreement in (None, 1.0)

    def as_dict(self) -> dict[str, float | int | bool | None]:
        return {**asdict(self), "passed": self.passed}


def export_onnx(model: RewardModel, path: Path) -> list[str]:
    """Trace the model to ONNX with dynamic batch and sequence axes; returns the input names."""
    model = model.eval()
    # token_type_ids feed the backbone where it takes them, and the response pooling always
    names = ["input_ids", "attention_mask"] + (
        ["token_type_ids"] if model.uses_token_types or model.pooling == "response" else []
    )
    dummy = tuple(torch.ones((2, 8), dtype=torch.long) for _ in names)
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["scores"] = {0: "batch"}
    # The tracer warns wherever the model turns a tensor into a Python bool (mask helpers in
    # transformers). Those branches do not depend on the batch or sequence size here, and the
    # parity gate below checks the traced graph on real inputs of many lengths.
    with torch.no_grad(), warnings.catch_warnings(), _eager_attention(model.backbone):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            dummy,
            str(path),
            input_names=names,
            output_names=["scores"],
            dynamic_axes=axes,
            opset_version=ONNX_OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    return names


@contextmanager
def _eager_attention(backbone: torch.nn.Module) -> Iterator[None]:
    """Trace attention as explicit MatMul/Softmax rather than torch's SDPA kernel.

    The traced SDPA graph materialises a padded [B, heads, T, T] mask in a form ONNX Runtime
    runs slowly on CPU: on 2 cores, MiniLM-L6 over HH items ran length-sorted batches of 8 at
    38.9 items/s traced from SDPA and 43.3 traced eager, batches of 32 at 27.6 and 35.9, and
    single items at the same speed. The weights and the maths are the same; the parity gate
    still compares the graph with the torch model as trained.
    """
    switch = getattr(backbone, "set_attn_implementation", None)
    config = getattr(backbone, "config", None)
    before = getattr(config, "_attn_implementation", None)
    if switch is None or before in (None, "eager"):
        yield
        return
    switch("eager")
    try:
        yield
    finally:
        switch(before)


# int8 becomes the version's default precision only past both bars: the 99% of
# validation decisions kept, and the service's promise that batching never moves a score.
INT8_DEFAULT_MIN_AGREEMENT = 0.99
BATCH_INVARIANCE_ATOL = 1e-5
# Agreement on a handful of pairs says little (and on none it is undefined, not 1.0: data of
# ratings or likes only), so below this many validation pairs int8 stays opt-in.
INT8_DEFAULT_MIN_PAIRS = 20


def int8_default_refusal(
    decision_agreement: float | None, batch_invariance_max_diff: float, n_pairs: int
) -> str | None:
    """Why int8 may not be the version's default precision; None when it may.

    int8 may be the default only if it picks fp32's winner on at least 99% of the validation
    pairs, of which there are enough to tell, and scores an item the same alone or in a batch
    (the service batches). Zero pairs never pass: agreement over no decisions is undefined.
    """
    if n_pairs == 0 or decision_agreement is None:
        return (
            f"no validation pairs to compare its decisions with fp32's on "
            f"(the gate needs at least {INT8_DEFAULT_MIN_PAIRS})"
        )
    if n_pairs < INT8_DEFAULT_MIN_PAIRS:
        return f"only {n_pairs} validation pairs (the gate needs at least {INT8_DEFAULT_MIN_PAIRS})"
    if decision_agreement < INT8_DEFAULT_MIN_AGREEMENT:
        return (
            f"decision agreement with fp32 {decision_agreement:.4f} is below "
            f"{INT8_DEFAULT_MIN_AGREEMENT:.2f}"
        )
    if batch_invariance_max_diff > BATCH_INVARIANCE_ATOL:
        return (
            f"an item scores up to {batch_invariance_max_diff:.1e} apart alone and in a batch "
            f"(at most {BATCH_INVARIANCE_ATOL:.0e} allowed)"
        )
    return None


def int8_qualifies_as_default(
    decision_agreement: float | None, batch_invariance_max_diff: float, n_pairs: int
) -> bool:
    """Whether int8 passes the gate of `int8_default_refusal`."""
    return int8_default_refusal(decision_agreement, batch_invariance_max_diff, n_pairs) is None


def export_int8(
    fp32_path: Path,
    int8_path: Path,
    tokenizer: PairTokenizer,
    reference: np.ndarray,
    parity_texts: Sequence[TextPair],
    n_pairs: int,
    calibration_texts: Sequence[TextPair],
) -> dict[str, object]:
    """Write the per-token int8 graph and measure it against fp32 on the parity items.

    `calibration_texts` (training items, never the parity ones) fit the quantisation.

    Reports decision agreement and max |diff| against `reference` (fp32), and the largest
    difference between scoring items alone and in one batch, then whether int8 qualifies as
    the default precision (`INT8_DEFAULT_MIN_AGREEMENT`, `BATCH_INVARIANCE_ATOL`).
    """
    calibration = [pad_batch([item], pad_id=tokenizer.pad_id) for item in tokenizer.encode(calibration_texts)]
    quantize_per_token(fp32_path, int8_path, calibration)
    scorer = TransformerOnnxScorer(int8_path, tokenizer, name="export", version="0")
    try:
        scores = scorer.score(parity_texts)
        report = check_parity(reference, scores, n_pairs, atol=float("inf"))
        sample = scorer.encode(parity_texts[:16])
        batch_diff = 0.0
        if sample:
            alone = np.concatenate([scorer.run([item]) for item in sample])
            batch_diff = float(np.max(np.abs(alone - scorer.run(sample))))
    finally:
        scorer.close()
    refusal = int8_default_refusal(report.decision_agreement, batch_diff, n_pairs)
    out: dict[str, object] = {
        "recipe": INT8_RECIPE,
        "decision_agreement_vs_fp32": report.decision_agreement,
        "max_abs_diff_vs_fp32": report.max_abs_diff,
        "n_pairs": n_pairs,
        "batch_invariance_max_diff": batch_diff,
        # What the agreement costs: pairwise accuracy on the same pairs at each precision
        # (None, as is the agreement, when there are no pairs).
        "pairwise_accuracy_fp32": pairwise_accuracy(reference[:n_pairs] - reference[n_pairs : 2 * n_pairs]),
        "pairwise_accuracy_int8": pairwise_accuracy(scores[:n_pairs] - scores[n_pairs : 2 * n_pairs]),
        "default_min_agreement": INT8_DEFAULT_MIN_AGREEMENT,
        "default_min_pairs": INT8_DEFAULT_MIN_PAIRS,
        "qualifies_as_default": refusal is None,
    }
    if refusal is not None:
        out["not_default_because"] = refusal
    return out


def copy_tokenizer(backbone_dir: Path, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (backbone_dir / name).is_file():
            shutil.copy2(backbone_dir / name, out_dir / name)


def decision_agreement(
    a_first: np.ndarray, a_second: np.ndarray, b_first: np.ndarray, b_second: np.ndarray
) -> float | None:
    """Share of pairs on which two engines pick the same winner; None (undefined) without pairs."""
    if a_first.size == 0:
        return None
    return float(np.mean(np.sign(a_first - a_second) == np.sign(b_first - b_second)))


def check_parity(
    reference: np.ndarray, candidate: np.ndarray, n_pairs: int, atol: float
) -> ParityReport:
    """`reference`/`candidate` hold [chosen_1..chosen_P, rejected_1..rejected_P, other items...]."""
    p = n_pairs
    return ParityReport(
        n_items=int(reference.size),
        n_pairs=p,
        max_abs_diff=float(np.max(np.abs(reference - candidate))) if reference.size else 0.0,
        decision_agreement=decision_agreement(reference[:p], reference[p : 2 * p], candidate[:p], candidate[p : 2 * p]),
        atol=atol,
    )


def export_transformer(
    model: RewardModel,
    tokenizer: PairTokenizer,
    backbone_dir: Path,
    out_dir: Path,
    parity_texts: Sequence[TextPair],
    n_parity_pairs: int,
    *,
    atol: float = 1e-4,
    quantize: bool = False,
    calibration_texts: Sequence[TextPair] = (),
) -> dict[str, object]:
    """Write the model folder and check it; raises ParityError past tolerance.

    `parity_texts` are real validation items laid out as in `check_parity`;
    `calibration_texts` are training items that fit the int8 quantisation (with `quantize`).
    Returns the metadata fragment: inputs, onnx files, parity (and int8 agreement).
    """
    if quantize and not calibration_texts:
        # Calibrating on the parity items would grade int8 on the data it was fitted to.
        raise ValueError("an int8 export needs calibration_texts from the training data")
    out_dir.mkdir(parents=True, exist_ok=True)
    inputs = export_onnx(model, out_dir / "model.onnx")
    copy_tokenizer(backbone_dir, out_dir / "tokenizer")
    model.save(out_dir / "torch")

    served = PairTokenizer.from_dir(out_dir / "tokenizer", tokenizer.max_length)
    # The reference runs through the torch engine's scorer: the same length-sorted batching
    # and output checks as the ONNX side, so only the engines differ.
    reference = TorchScorer(model, tokenizer, name="export", version="0").score(parity_texts)
    onnx = TransformerOnnxScorer(out_dir / "model.onnx", served, name="export", version="0")
    parity = check_parity(reference, onnx.score(parity_texts), n_parity_pairs, atol)
    if not parity.passed:
        agreement = "n/a" if parity.decision_agreement is None else f"{parity.decision_agreement:.4f}"
        raise ParityError(
            f"ONNX export disagrees with torch: max |diff| {parity.max_abs_diff:.2e} "
            f"(tolerance {atol:.0e}), decision agreement {agreement} on "
            f"{parity.n_pairs} pairs"
        )
    fragment: dict[str, object] = {
        "inputs": inputs,
        "onnx": {"fp32": "model.onnx"},
        "default_precision": "fp32",
        "parity": parity.as_dict(),
    }
    if quantize:
        int8 = export_int8(
            out_dir / "model.onnx",
            out_dir / "model.int8.onnx",
            served,
            reference,
            parity_texts,
            n_parity_pairs,
            calibration_texts,
        )
        fragment["onnx"] = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
        fragment["int8"] = int8
        if int8["qualifies_as_default"]:
            fragment["default_precision"] = "int8"
    return fragment
