"""Build the right Scorer for a stored model version and engine.

Everything that scores (the service, evaluation, benchmarks) goes through `load_scorer`,
so what is measured is what is served.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from model_store.scoring import Scorer

# int8 is a quantised ONNX file; fp16/bf16 are torch dtypes for the GPU.
ENGINE_PRECISIONS = {"onnx": ("auto", "fp32", "int8"), "torch": ("auto", "fp32", "fp16", "bf16")}
ENGINES = tuple(ENGINE_PRECISIONS)
PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")


def check_engine_precision(engine: str, precision: str) -> None:
    """Refuse a precision the engine cannot run, rather than silently running another."""
    allowed = ENGINE_PRECISIONS.get(engine)
    if allowed is not None and precision not in allowed:
        others = [e for e, p in ENGINE_PRECISIONS.items() if precision in p]
        hint = f"; {precision} runs on --engine {others[0]}" if others else ""
        raise ValueError(
            f"--engine {engine} cannot run precision {precision}: choose one of {', '.join(allowed)}{hint}"
        )


def resolved_precision(engine: str, precision: str, metadata: Mapping[str, Any]) -> str:
    """What `precision` means for this engine and stored version: "auto" is fp32 on the torch
    engine, and the version's default_precision on the ONNX engine (fp32 unless its int8
    export passed the gate)."""
    if precision != "auto":
        return precision
    if engine == "torch":
        return "fp32"
    return str(metadata.get("default_precision", "fp32"))


def check_loadable(metadata: Mapping[str, Any], *, name: str, version: str, engine: str, device: str, precision: str) -> None:
    """Raise ValueError for what `load_scorer_from_dir` would refuse, found from the version's
    metadata and the installed runtimes alone.

    A server loads its model in the background after it starts listening, so a refusal there
    leaves it up, answering 503; `plaudit serve` calls this first and stops in one line.
    """
    check_engine_precision(engine, precision)
    kind = metadata.get("kind")
    if kind not in ("transformer", "linear"):
        raise ValueError(f"{name}:{version}: metadata kind {kind!r} is not one of: transformer, linear")
    if kind == "linear" and engine != "onnx":
        raise ValueError(f"{name}:{version} is a linear model, which runs on --engine onnx only")
    chosen = resolved_precision(engine, precision, metadata)
    if engine == "onnx":
        onnx_files: Mapping[str, str] = metadata.get("onnx", {"fp32": "model.onnx"})
        if chosen not in onnx_files:
            # Not silently the fp32 file: the precision reported would not be the one that ran.
            fix = (
                "a linear model is exported in fp32 only: pick --precision fp32 (or auto)"
                if kind == "linear"
                else "pick another --precision or re-train with --quantize"
            )
            raise ValueError(
                f"{name}:{version} has no {chosen} ONNX file (has: {', '.join(sorted(onnx_files))}); {fix}"
            )
        if kind == "linear":
            return
        if device == "cuda":
            from model_store.onnx_scorer import execution_providers

            try:
                execution_providers(device)
            except RuntimeError as exc:
                raise ValueError(str(exc)) from None
    elif engine == "torch":
        if device == "cpu" and chosen != "fp32":
            raise ValueError(f"--precision {chosen} on the torch engine is for --device cuda; use fp32 on CPU")
        if device == "cuda":
            import torch  # the torch engine's own dependency; only asked for it

            if not torch.cuda.is_available():
                raise ValueError("--device cuda, but torch sees no CUDA device")


def load_scorer_from_dir(
    model_dir: Path,
    metadata: dict[str, Any],
    *,
    name: str,
    version: str,
    engine: str = "onnx",
    device: str = "cpu",
    precision: str = "auto",
    intra_op_threads: int | None = None,
    intra_op_spinning: bool = False,
    onnx_options: Any = None,
    lone_call_threads: int | None = None,
) -> Scorer:
    """Load a model folder laid out as the store keeps it (model.onnx, tokenizer/, torch/...).

    `intra_op_spinning` lets ONNX Runtime's threads busy-wait (see onnx_scorer.session_options).
    `onnx_options` (an onnxruntime.SessionOptions) replaces the tuned options of the
    transformer ONNX engine; only the naive benchmark baseline passes it (ORT's defaults).
    `lone_call_threads` gives the transformer ONNX engine a second session for calls that
    have the engine to themselves (`Scorer.run_alone`); other engines run those as any call.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    check_loadable(metadata, name=name, version=version, engine=engine, device=device, precision=precision)
    kind = metadata.get("kind")
    if kind == "linear":
        from model_store.linear_scorer import LinearOnnxScorer

        return LinearOnnxScorer(
            model_dir, name=name, version=version, intra_op_threads=intra_op_threads, spinning=intra_op_spinning
        )
    from model_store.tokenization import PairTokenizer

    tokenizer = PairTokenizer.from_dir(model_dir / "tokenizer", max_length=int(metadata["max_length"]))
    if engine == "torch":
        from model_store.engines.torch_engine import TorchScorer

        return TorchScorer.load(
            model_dir / "torch",
            tokenizer,
            name=name,
            version=version,
            device=device,
            precision=resolved_precision(engine, precision, metadata),
        )

    from model_store.onnx_scorer import TransformerOnnxScorer

    onnx_files: dict[str, str] = metadata.get("onnx", {"fp32": "model.onnx"})
    chosen = resolved_precision(engine, precision, metadata)  # check_loadable: it has that file
    onnx_path = (model_dir / str(onnx_files[chosen])).resolve()
    if not onnx_path.is_relative_to(model_dir.resolve()):
        # The checksums cover the version's own files only; a path that leaves its folder
        # would load something no checksum vouches for.
        raise ValueError(
            f"{name}:{version}: metadata names ONNX file {onnx_files[chosen]!r}, outside the version's folder"
        )
    return TransformerOnnxScorer(
        onnx_path,
        tokenizer,
        name=name,
        version=version,
        device=device,
        intra_op_threads=intra_op_threads,
        spinning=intra_op_spinning,
        options=onnx_options,
        lone_call_threads=lone_call_threads,
    )


def load_scorer(
    mv: Any,
    engine: str = "onnx",
    device: str = "cpu",
    precision: str = "auto",
    intra_op_threads: int | None = None,
    intra_op_spinning: bool = False,
    onnx_options: Any = None,
    lone_call_threads: int | None = None,
) -> Scorer:
    """Load a `ModelVersion` from the store. The caller verifies checksums first (store.verify)."""
    return load_scorer_from_dir(
        Path(mv.path),
        mv.metadata,
        name=mv.name,
        version=str(mv.version),
        engine=engine,
        device=device,
        precision=precision,
        intra_op_threads=intra_op_threads,
        intra_op_spinning=intra_op_spinning,
        onnx_options=onnx_options,
        lone_call_threads=lone_call_threads,
    )
