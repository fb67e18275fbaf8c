"""Engine selection: the one function that turns Settings into a ready Scorer.

"deterministic" and "failing" are weightless test engines; "onnx" and "torch" load a
version from the model store through `model_store.loading.load_scorer`, which imports the
heavy engines (onnxruntime, torch) only when it builds one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from model_store.engines import TEST_ENGINES
from model_store.errors import StoreError
from model_store.loading import load_scorer, resolved_precision
from model_store.scoring import Scorer
from model_store.store import ModelStore, ModelVersion
from service.model import ModelInfo
from service.settings import Settings, env_name


class ModelLoadError(Exception):
    """The configured model cannot be loaded; the message says which setting to fix."""


def resolve_stored_model(settings: Settings, *, verify: bool = True) -> tuple[ModelStore, ModelVersion]:
    """The store and its ModelVersion for `settings.model`, checksums verified unless `verify`
    is False."""
    if not settings.store_dir.is_dir():
        what = "is a file, not a store folder" if settings.store_dir.exists() else "does not exist"
        raise ModelLoadError(
            f"model store {settings.store_dir} {what}; point {env_name('store_dir')} "
            "(or --store) at a store, or use --engine deterministic to run without a model"
        )
    store = ModelStore(settings.store_dir)
    mv = store.resolve(settings.model)
    if verify:
        store.verify(mv)
    return store, mv


def load_model(settings: Settings) -> tuple[Scorer, ModelInfo]:
    """Build and warm up the scorer `settings` asks for (blocking: run it off the event loop)."""
    if settings.engine in TEST_ENGINES:
        from model_store.engines.deterministic import make_test_engine

        test_scorer = make_test_engine(settings.engine, settings.engine_options)
        layout = settings.engine_layout(test_scorer.precision)
        info = ModelInfo(
            name=test_scorer.name,
            version=test_scorer.version,
            engine=settings.engine,
            device="cpu",
            precision=test_scorer.precision,
            max_length=test_scorer.max_length,
            engine_workers=layout.workers,
            threads_per_call=layout.threads_per_call,
            max_batch_items=layout.max_batch_items,
        )
        test_scorer.warmup()
        return test_scorer, info

    store, mv = resolve_stored_model(settings)
    # The layout depends on the precision "auto" resolves to, so resolve it first.
    layout = settings.engine_layout(resolved_precision(settings.engine, settings.precision, mv.metadata))
    scorer = load_scorer(
        mv,
        engine=settings.engine,
        device=settings.device,
        precision=settings.precision,
        intra_op_threads=layout.threads_per_call,
        intra_op_spinning=settings.intra_op_spinning,
        lone_call_threads=layout.lone_call_threads,
    )
    aliases = _aliases_or_none_known(store, mv)
    info = ModelInfo(
        name=mv.name,
        version=str(mv.version),
        engine=settings.engine,
        device=settings.device,
        precision=_effective_precision(settings, scorer, mv.metadata),
        max_length=getattr(scorer, "max_length", None),
        aliases=aliases,
        store_root=str(store.root),
        engine_workers=layout.workers,
        threads_per_call=layout.threads_per_call,
        max_batch_items=layout.max_batch_items,
        # What the engine really holds: only the transformer ONNX engine keeps a lone-call session.
        lone_call_threads=getattr(scorer, "lone_call_threads", None),
    )
    try:
        scorer.warmup()
    except BaseException:
        scorer.close()  # a model that cannot warm up is never served; free its session now
        raise
    return scorer, info


def _effective_precision(settings: Settings, scorer: Scorer, metadata: Mapping[str, Any]) -> str:
    """What "auto" turned into: the scorer's own word if it has one, else the store's default."""
    reported = getattr(scorer, "precision", None)
    if isinstance(reported, str):
        return reported
    return resolved_precision(settings.engine, settings.precision, metadata)


def batch_limits(settings: Settings, info: ModelInfo) -> Settings:
    """The batcher's limits: `settings`, with the engine workers and batch cap the loaded
    model was laid out for."""
    return settings.model_copy(
        update={"engine_workers": info.engine_workers, "max_batch_items": info.max_batch_items}
    )


def precision_note(info: ModelInfo, int8_kernel: Callable[[], str]) -> str | None:
    """A word for the log where int8 buys little on this machine, else None.

    `int8_kernel` is `model_store.int8_products.int8_kernel`, asked only for int8 on the ONNX
    CPU engine (its probe opens an ONNX Runtime session). On x86 CPUs without VNNI ('u8u8')
    stored int8 runs ONNX Runtime's exact u8 x u8 kernel, which measured about as fast as
    fp32 (README, Benchmarks: `python -m loadtest.bench_ops`), while fp32 gives the model's
    own scores rather than ones that agree with them on 99% of decisions.
    """
    if (info.engine, info.device, info.precision) != ("onnx", "cpu", "int8") or int8_kernel() != "u8u8":
        return None
    return (
        "int8 runs ONNX Runtime's exact u8 x u8 kernel on this CPU (no VNNI), which measured about "
        f"as fast as fp32 on such CPUs; {env_name('precision')}=fp32 (--precision fp32) serves "
        "fp32's own scores at about the same speed"
    )


def _int8_kernel() -> str:
    from model_store.int8_products import int8_kernel  # imports onnxruntime: only when asked

    return int8_kernel()


def log_precision_note(info: ModelInfo) -> None:
    """Log `precision_note` for a model that just started serving, where it has one."""
    note = precision_note(info, _int8_kernel)
    if note is not None:
        logging.getLogger("plaudit.service").info(note)


def _aliases_or_none_known(store: ModelStore, mv: ModelVersion) -> tuple[str, ...]:
    """The aliases pointing at `mv`; none where its model's aliases.json cannot be read. A model
    named by version (NAME:3) needs no alias to load, and must not fail for a damaged alias file
    (after its scorer was loaded, which would then be left open)."""
    try:
        return tuple(store.aliases_of(mv.name, mv.version))
    except (StoreError, OSError) as exc:
        logging.getLogger("plaudit.service").warning(
            "could not read the aliases of %s (%s); serving %s with none known", mv.name, exc, mv.ref
        )
        return ()


def stored_model_problem(settings: Settings, *, verify: bool = True) -> str | None:
    """What stops `settings` from serving its stored model (a wrong store or model name, an
    engine, precision or device the version lacks), said in one line; None if nothing does, or
    if the engine is a test engine, which needs no store. Checked before serving, so that the
    commonest mistakes stop the start rather than leave a server answering 503 for good.
    `verify=False` skips the checksums (load_model checks them again anyway)."""
    if settings.engine in TEST_ENGINES:
        return None
    from model_store.loading import check_loadable

    try:
        _, mv = resolve_stored_model(settings, verify=verify)
        check_loadable(
            mv.metadata,
            name=mv.name,
            version=str(mv.version),
            engine=settings.engine,
            device=settings.device,
            precision=settings.precision,
        )
    except (StoreError, ModelLoadError, ValueError, OSError) as exc:
        return str(exc)
    return None
