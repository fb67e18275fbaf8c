"""ONNX Runtime engine for the transformer reward model (the default way to serve it)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from model_store.int8_products import exact_integer_products
from model_store.scoring import WARMUP_PAIR, BaseScorer, Encoded, TextPair
from model_store.tokenization import PairTokenizer, TokenizedPair, pad_batch


def session_options(intra_op_threads: int | None, spinning: bool = False) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # One batch at a time runs in a dedicated thread, so all cores go to intra-op work.
    opts.intra_op_num_threads = intra_op_threads or (os.cpu_count() or 1)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Spinning (ORT's own default) makes intra-op threads busy-wait between the graph's
    # parallel sections instead of sleeping. MiniLM-L6 on 2 vCPUs, full bench_serving runs:
    # spinning cut the idle p50 from 26.5 to 20.4 ms, but cost ~17% of the throughput under
    # load (c=32: 59.0 -> 48.9 items/s), since a spinning thread takes the core the batch,
    # the event loop and the tokenizer need. Throughput wins by default; latency-bound
    # deployments at low load can turn it on (PLAUDIT_INTRA_OP_SPINNING=true).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    opts.log_severity_level = 3
    return opts


def execution_providers(device: str) -> list[str]:
    """CUDA when asked for and installed (onnxruntime-gpu), else CPU."""
    if device == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise RuntimeError(
                "device=cuda needs onnxruntime-gpu (CUDAExecutionProvider is not available); "
                "install onnxruntime-gpu or use --engine torch --device cuda"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class TransformerOnnxScorer(BaseScorer):
    """Tokenize with the stored tokenizer, run the stored ONNX graph, return [B] rewards."""

    def __init__(
        self,
        onnx_path: Path,
        tokenizer: PairTokenizer,
        *,
        name: str,
        version: str,
        device: str = "cpu",
        intra_op_threads: int | None = None,
        spinning: bool = False,
        options: ort.SessionOptions | None = None,
        lone_call_threads: int | None = None,
    ) -> None:
        """`options` replaces Plaudit's tuned session options (`session_options`) when given.

        `lone_call_threads`: a second session on that many threads serves `run_alone`. Under
        load, single-threaded calls side by side serve more items on a small machine than
        calls that split each small graph node across threads; a lone item on an idle engine
        still finishes sooner on every core (README, serving). Both sessions load the same
        file, and a thread count does not change a score (tests/model_store).
        """
        self.name = name
        self.version = version
        self.tokenizer = tokenizer
        self.max_length = tokenizer.max_length
        def open_session(opts: ort.SessionOptions) -> ort.InferenceSession:
            return ort.InferenceSession(
                str(onnx_path), sess_options=exact_integer_products(opts), providers=execution_providers(device)
            )

        self._session = open_session(options if options is not None else session_options(intra_op_threads, spinning))
        self._lone_session: ort.InferenceSession | None = None
        # Compared with the threads the first session really got: a second one that adds none is waste.
        if lone_call_threads not in (None, self._session.get_session_options().intra_op_num_threads):
            self._lone_session = open_session(session_options(lone_call_threads, spinning))
        self._inputs = [i.name for i in self._session.get_inputs()]
        self._output = self._session.get_outputs()[0].name

    def encode(self, pairs: Sequence[TextPair]) -> list[Encoded]:
        return [Encoded(n_tokens=len(t), payload=t) for t in self.tokenizer.encode(pairs)]

    def _run(self, batch: Sequence[Encoded]) -> np.ndarray:
        return self._run_on(self._session, batch)

    def _run_alone(self, batch: Sequence[Encoded]) -> np.ndarray:
        return self._run_on(self._lone_session or self._session, batch)

    def _run_on(self, session: ort.InferenceSession, batch: Sequence[Encoded]) -> np.ndarray:
        items: list[TokenizedPair] = [e.payload for e in batch]
        feeds = pad_batch(items, pad_id=self.tokenizer.pad_id)
        (scores,) = session.run([self._output], {k: feeds[k] for k in self._inputs})
        return scores

    @property
    def lone_call_threads(self) -> int | None:
        """Threads of the session `run_alone` uses, when it has its own."""
        return self._lone_session.get_session_options().intra_op_num_threads if self._lone_session else None

    def warmup(self) -> None:
        super().warmup()
        if self._lone_session is not None:
            self.run_alone(self.encode([WARMUP_PAIR]))

    def close(self) -> None:
        self._lone_session = None
        self._session = None  # type: ignore[assignment]
