"""Optional torch engine: the same stored version, run by PyTorch (GPU fp16/bf16, or CPU fp32).

Needs torch and transformers installed; the ONNX engine needs neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from model_store.engines.torch_model import RewardModel
from model_store.scoring import BaseScorer, Encoded, TextPair
from model_store.tokenization import PairTokenizer, TokenizedPair, pad_batch

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# On CUDA, batches are padded to a multiple of this many tokens. A served batch's shape
# changes with every call (its size and its longest item), and kernels pay a first-use cost
# per shape; rounding the length keeps the shapes few.
CUDA_WIDTH_MULTIPLE = 32


class TorchScorer(BaseScorer):
    """Scores with a RewardModel: one loaded from a stored version (`load`), or the one
    training holds in memory, which the export's parity gate compares with ONNX."""

    def __init__(
        self,
        model: RewardModel,
        tokenizer: PairTokenizer,
        *,
        name: str,
        version: str,
        device: str = "cpu",
        precision: str = "fp32",
    ) -> None:
        if precision not in DTYPES:
            raise ValueError(f"torch engine precision must be one of {', '.join(DTYPES)}")
        if device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device=cuda but torch sees no CUDA device")
        if device == "cpu" and precision != "fp32":
            raise ValueError("fp16/bf16 are for --device cuda; use fp32 on CPU")
        self.name = name
        self.version = version
        self.tokenizer = tokenizer
        self.max_length = tokenizer.max_length
        self.device = torch.device(device)
        self.dtype = DTYPES[precision]
        self.model = model.to(self.device, dtype=self.dtype).eval()
        self.width_multiple = 1
        if self.device.type == "cuda":
            self.width_multiple = CUDA_WIDTH_MULTIPLE
            # cuDNN's attention builds an execution plan for every new (batch, length) shape.
            # On the H200 lent in session 14, a first pass over length-sorted batches of 32 ran
            # at 191 items/s with it and 3,139 without (6,081 and 6,523 once every shape had been
            # seen); with this and the length rounding above, the GPU check's ceiling went from
            # 9,095 to 38,134 items/s. Flash and memory-efficient attention have no such cost.
            # The switch is process-wide; this engine is the process's only torch user.
            torch.backends.cuda.enable_cudnn_sdp(False)

    @classmethod
    def load(cls, torch_dir: Path, tokenizer: PairTokenizer, **options: str) -> TorchScorer:
        """The model in a stored version's `torch/` folder; `options` as for the constructor."""
        return cls(RewardModel.load(torch_dir), tokenizer, **options)

    def encode(self, pairs: Sequence[TextPair]) -> list[Encoded]:
        return [Encoded(n_tokens=len(t), payload=t) for t in self.tokenizer.encode(pairs)]

    @torch.inference_mode()
    def _run(self, batch: Sequence[Encoded]) -> np.ndarray:
        items: list[TokenizedPair] = [e.payload for e in batch]
        feeds = {
            k: torch.from_numpy(v).to(self.device, non_blocking=True)
            for k, v in pad_batch(items, pad_id=self.tokenizer.pad_id, width_multiple=self.width_multiple).items()
        }
        scores = self.model(**feeds)
        return scores.float().cpu().numpy()
