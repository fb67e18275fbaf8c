"""`plaudit train` end to end: data -> split -> fit -> export + parity -> evaluate -> register.

Everything is built in a staging folder; the store sees the model only once it has passed
validation, the parity gate and evaluation. Any failure before that leaves the store as it was.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from model_store.errors import StoreError
from model_store.loading import load_scorer, load_scorer_from_dir
from model_store.references import validate_name
from model_store.scoring import TextPair
from model_store.store import ModelStore, ModelVersion
from training.data.examples import Example, LikeExample, PairExample, RatingExample, scored_texts
from training.data.loaders import Dataset, load_dataset
from training.data.report import all_of, count_of, describe
from training.data.split import GROUP_BY_CONVERSATION, GROUP_BY_PROMPT, count_groups, split_by_prompt
from training.evaluate import evaluate, headline
from training.transformer_trainer import TransformerConfig

log = logging.getLogger(__name__)
MODEL_KINDS = ("transformer", "linear")


@dataclass
class TrainJob:
    data: list[str]
    store: Path  # a str is taken too (and refused when empty)
    name: str
    kind: str = "transformer"
    rating_scale: tuple[float, float] = (1.0, 5.0)
    val_fraction: float = 0.1
    seed: int = 0
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    linear_max_terms: int = 2000
    quantize: bool = False
    parity_atol: float = 1e-4
    promote_to: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        # Everything here is cheap and needs no file: checked at construction, before any work.
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"--model must be one of {', '.join(MODEL_KINDS)}, got {self.kind!r}")
        if not self.data:
            raise ValueError("give at least one --data PATH")
        check_distinct_data(self.data)
        # Path("") is ".": an empty --store would quietly make the current folder the store.
        if not str(self.store).strip():
            raise ValueError("--store is empty: give the model store's folder, e.g. --store plaudit-data/models")
        self.store = Path(self.store)
        # The store's own rule (model_store.references), applied now rather than at registration,
        # when the model would be trained already (and, for --promote, registered).
        for flag, value, kind in (("--name", self.name, "model name"), ("--promote", self.promote_to, "alias")):
            if value is not None:
                try:
                    validate_name(value, kind=kind)
                except StoreError as exc:
                    raise StoreError(f"{flag}: {exc}") from None
        fraction = self.val_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not (
            math.isfinite(fraction) and 0.0 < fraction < 1.0
        ):
            raise ValueError(f"--val-fraction must be between 0 and 1 (exclusive), e.g. 0.1; got {fraction}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"--seed must be a whole number from 0 to {MAX_SEED}, got {self.seed}")


MAX_SEED = 2**32 - 1  # numpy's seed range, which the transformer trainer seeds


def check_distinct_data(data: list[str]) -> None:
    """Refuse a data file given twice (by any spelling of its path): its rows would count twice."""
    seen: dict[str, str] = {}
    for item in data:
        text = str(item)
        key = text if "://" in text else os.path.realpath(os.path.expanduser(text))
        if key in seen:
            spelled = f"{seen[key]!r} and {text!r}" if seen[key] != text else f"{text!r} twice"
            raise ValueError(
                f"--data names the same file {spelled}: its rows would be trained on twice; give each file once"
            )
        seen[key] = text


class OutputPathError(ValueError):
    """A --store or --checkpoint-dir the run could not write into, found before any work."""


class StoreWriteError(RuntimeError):
    """The store failed while the new version was written or promoted (a filesystem fault)."""


def _os_reason(exc: OSError) -> str:
    """'Read-only file system: /x/.register-1f' from an OSError, without the errno prefix."""
    reason = exc.strerror or type(exc).__name__
    return f"{reason}: {exc.filename}" if exc.filename else reason


def check_writable_dir(path: Path, flag: str) -> None:
    """Refuse a folder the run could not create or write into (a file, a read-only place).

    Nothing is left behind: an existing folder (or, for one still to be created, the nearest
    existing folder above it) gets a probe folder that is removed at once.
    """
    shown = f"{flag} {path}"
    existing = path
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():
            raise OutputPathError(f"{shown}: {existing} is a broken symbolic link; give a folder")
        existing = existing.parent
    if not existing.is_dir():
        what = "" if existing == path else f"{existing}, above it, "
        raise OutputPathError(f"{shown}: {what}is a file, not a folder; give a folder (or a path to create one)")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".plaudit-probe-", dir=existing))
    except OSError as exc:
        what = "cannot write into it" if existing == path else f"cannot create it in {existing}"
        raise OutputPathError(f"{shown}: {what}: {exc.strerror or exc}; give a writable folder") from None


class UnusableDataError(ValueError):
    """The data loaded but cannot train and evaluate a useful model (too little, or one-sided)."""


@dataclass
class TrainOutcome:
    version: ModelVersion
    metrics: dict[str, Any]
    wall_seconds: float
    # What the run could not measure (a metric undefined on the validation split), one line each.
    warnings: list[str] = field(default_factory=list)


def parity_texts(val: list[Example]) -> tuple[list[TextPair], int]:
    """Validation texts laid out [chosen..., rejected..., other responses...] for the parity gate."""
    pairs = [e for e in val if isinstance(e, PairExample)]
    texts = [TextPair(p.prompt, p.chosen) for p in pairs] + [TextPair(p.prompt, p.rejected) for p in pairs]
    texts += [TextPair(e.prompt, e.response) for e in val if not isinstance(e, PairExample)]
    return texts, len(pairs)


# int8 calibration items: enough rows (~20k tokens at HH lengths) for a stable X^T X of
# MiniLM's widest input (1,536 channels), few enough to keep the export under a minute.
CALIBRATION_ITEMS = 128


def calibration_texts(train: list[Example], n_items: int = CALIBRATION_ITEMS) -> list[TextPair]:
    """Training items spread evenly over the training set (pairs give both of their sides)."""
    texts = scored_texts(train)
    step = max(1, len(texts) // n_items)
    return texts[::step][:n_items]


def _fit_transformer(job: TrainJob, train: list[Example], val: list[Example], out: Path) -> dict[str, Any]:
    from training.export import export_transformer
    from training.transformer_trainer import TransformerTrainer

    cfg = job.transformer
    cfg.seed = job.seed
    result = TransformerTrainer(cfg, progress=job.progress).fit(train, val)
    texts, n_pairs = parity_texts(val or train[:64])
    fragment = export_transformer(
        result.model,
        result.tokenizer,
        result.backbone_dir,
        out,
        texts,
        n_pairs,
        atol=job.parity_atol,
        quantize=job.quantize,
        calibration_texts=calibration_texts(train),
    )
    return {
        "kind": "transformer",
        "backbone": str(result.backbone_dir),
        "backbone_name": result.backbone_dir.name if result.backbone_dir.name != "model" else "all-MiniLM-L6-v2",
        "tokenizer": "tokenizer/",
        "max_length": cfg.max_length,
        "pooling": cfg.pooling,
        "train_config": {k: v for k, v in asdict(cfg).items() if k not in ("checkpoint_dir", "resume")},
        "train_history": result.history,
        **fragment,
    }


def _fit_linear(job: TrainJob, train: list[Example], val: list[Example], out: Path) -> dict[str, Any]:
    from model_store.features import HAND_FEATURES
    from training.linear import export_linear, train_linear, weights_table

    if job.transformer.threads:  # --threads: the linear model trains with torch too
        import torch

        torch.set_num_threads(job.transformer.threads)
    model = train_linear(train, val, max_terms=job.linear_max_terms, seed=job.seed)
    export_linear(model, out)
    return {
        "kind": "linear",
        "backbone": None,
        "max_length": None,
        "featurizer": "featurizer.json",
        "onnx": {"fp32": "model.onnx"},
        "default_precision": "fp32",
        # every readable hand feature, plus the strongest TF-IDF terms (the full table is in the ONNX graph)
        "weights": [r for r in weights_table(model) if r["name"] in HAND_FEATURES]
        + [r for r in weights_table(model) if r["name"] not in HAND_FEATURES][:50],
    }


SHOWN_DATA_WARNINGS = 5  # at training time; `plaudit data check` prints every one


def _describe_counts(dataset: Dataset) -> str:
    """'12 examples (10 pairs, 2 likes)'."""
    parts = [count_of(n, shape.removesuffix("s")) for shape, n in dataset.counts().items() if n]
    return f"{count_of(len(dataset.examples), 'example')} ({', '.join(parts)})"


def check_validation_split(dataset: Dataset, val: list[Example]) -> None:
    """Refuse a run whose validation split is empty: it would register a model nobody measured."""
    if val:
        return
    groups = count_groups(dataset.examples, GROUP_BY_CONVERSATION)
    raise UnusableDataError(
        f"the validation split is empty: the data holds {_describe_counts(dataset)} from "
        f"{count_of(groups, 'conversation')}, and a conversation's rows never straddle the split; "
        "give more data, about at least 2 different conversations (prompts), so that one can be "
        "held out for validation (with a single conversation no --val-fraction can help)"
    )


def preference_signal_problem(train: list[Example]) -> str | None:
    """Why `train` holds nothing to learn a preference from, or None when it holds something.

    A pair always says which response is better; likes only with both values, ratings only
    when they differ. Likes all of one value or ratings all equal teach no ranking at all.
    """
    pairs = [e for e in train if isinstance(e, PairExample)]
    ratings = [e for e in train if isinstance(e, RatingExample)]
    likes = [e for e in train if isinstance(e, LikeExample)]
    if pairs or len({e.liked for e in likes}) > 1 or len({e.normalized for e in ratings}) > 1:
        return None
    found = []
    if likes:
        value = str(likes[0].liked).lower()
        found.append(f"{all_of(len(likes), 'like')} liked={value}")
    if ratings:
        same = len({e.rating for e in ratings}) == 1
        value = f"{ratings[0].rating:g}" if same else "at the same point of their scales"
        found.append(f"{all_of(len(ratings), 'rating')} {value}")
    missing = [name for name, items in (("pairs", pairs), ("ratings", ratings), ("likes", likes)) if not items]
    if missing:
        found.append(f"there are no {' or '.join(missing)}")
    details = found[0] if len(found) == 1 else f"{', '.join(found[:-1])} and {found[-1]}"
    return (
        f"in the training split, {details}: nothing to learn a preference from; "
        "give pairs, likes of both values, or ratings that differ"
    )


def check_outputs(job: TrainJob, store: ModelStore) -> None:
    """Refuse, before the data is read, a run whose results could not be kept: a store or
    checkpoint folder that is a file or read-only, a missing backbone, an unreadable alias file."""
    check_writable_dir(store.root, "--store")
    model_dir = store.root / job.name
    for folder in (model_dir, model_dir / "versions"):
        if folder.exists() and not folder.is_dir():
            raise OutputPathError(
                f"--store {store.root}: {folder} is a file where the store keeps a folder; "
                "move it away or give another --store"
            )
        if folder.is_dir():
            check_writable_dir(folder, "--store")
    if job.promote_to is not None and job.name in store.names():
        try:
            store.aliases(job.name)  # the file a promotion rewrites: damaged -> refused now
        except OSError as exc:
            raise OutputPathError(f"--promote: cannot read the aliases of {job.name!r}: {_os_reason(exc)}") from None
    if job.kind == "transformer":
        cfg = job.transformer
        cfg.backbone_dir()  # FileNotFoundError naming --backbone
        if cfg.checkpoint_dir is not None:
            check_writable_dir(Path(cfg.checkpoint_dir), "--checkpoint-dir")
            ckpt = Path(cfg.checkpoint_dir) / "checkpoint.pt"
            if ckpt.exists() and not ckpt.is_file():
                raise OutputPathError(
                    f"--checkpoint-dir {cfg.checkpoint_dir}: {ckpt} is not a file; move it away or give another folder"
                )


def run_training(job: TrainJob) -> TrainOutcome:
    started = time.perf_counter()
    store = ModelStore(job.store)
    check_outputs(job, store)
    dataset: Dataset = load_dataset(job.data, rating_scale=job.rating_scale)  # refuses bad data first
    train, val = split_by_prompt(dataset.examples, val_fraction=job.val_fraction, seed=job.seed)
    if not train:
        raise ValueError("the training split is empty: give more data or a smaller --val-fraction")
    # Refused before training, not after: an empty validation split measures nothing and a
    # one-sided training split teaches nothing, yet both would register a version.
    check_validation_split(dataset, val)
    problem = preference_signal_problem(train)
    if problem is not None:
        raise UnusableDataError(problem)
    log.info("data: %d train, %d validation examples (sha256 %s)", len(train), len(val), dataset.sha256[:12])
    for warning in dataset.warnings[:SHOWN_DATA_WARNINGS]:
        log.warning("data: %s", warning)
    if len(dataset.warnings) > SHOWN_DATA_WARNINGS:
        log.warning(
            "data: %d more warning(s); plaudit data check lists them all",
            len(dataset.warnings) - SHOWN_DATA_WARNINGS,
        )

    with tempfile.TemporaryDirectory(prefix="plaudit-train-") as tmp:
        staging = Path(tmp) / "model"
        staging.mkdir()
        fit = _fit_transformer if job.kind == "transformer" else _fit_linear
        metadata = fit(job, train, val, staging)
        metadata.update(
            {
                "objectives": sorted({k for k, n in dataset.counts().items() if n}),
                "data": {
                    "files": [str(p) for p in job.data],
                    "sha256": dataset.sha256,
                    "counts": dataset.counts(),
                    "quality": _quality_summary(dataset),
                },
                "split": {
                    "val_fraction": job.val_fraction,
                    "seed": job.seed,
                    "group_by": GROUP_BY_CONVERSATION,
                    "train": len(train),
                    "val": len(val),
                },
                "rating_scale": list(job.rating_scale),
                "environment": {"python": platform.python_version(), "machine": platform.machine()},
            }
        )
        scorer = load_scorer_from_dir(staging, metadata, name=job.name, version="staging")
        report = evaluate(scorer, val, plots_dir=staging / "eval") if val else {}
        scorer.close()
        report.pop("model", None)
        report.pop("plots", None)
        metadata["metrics"] = {**headline(report), "validation": report}
        previous = _evaluate_previous(store, job.name, val, metadata["split"])
        if previous is not None:
            metadata["metrics"]["previous"] = previous
        metadata["train_seconds"] = round(time.perf_counter() - started, 2)
        try:
            version = store.register(job.name, staging, metadata)
        except OSError as exc:
            raise StoreWriteError(
                f"cannot write the new version of {job.name!r} into the store {job.store}: {_os_reason(exc)}; "
                "nothing was registered"
            ) from exc
    if job.promote_to is not None:
        try:
            store.promote(job.name, version.version, alias=job.promote_to)
        except (OSError, StoreError) as exc:
            reason = _os_reason(exc) if isinstance(exc, OSError) else str(exc)
            raise StoreWriteError(
                f"registered {version.ref}, but could not point {job.promote_to!r} at it: {reason}; "
                f"the version is kept: once that is fixed, run "
                f"plaudit models promote {version.ref} --to {job.promote_to} --store {job.store}"
            ) from exc
    return TrainOutcome(
        version=version,
        metrics=metadata["metrics"],
        wall_seconds=time.perf_counter() - started,
        warnings=[f"on the validation split, {w}" for w in report.get("warnings", [])],
    )


def _evaluate_previous(
    store: ModelStore, name: str, val: list[Example], split: dict[str, Any]
) -> dict[str, Any] | None:
    """How the version now in place (production, else newest) does on the new validation split.

    After retraining on fresh feedback this is the number to beat; None when there is no
    earlier version or it cannot be loaded (its failure must not block the new one).
    The split hashes each conversation to a side, so a version split with the same seed,
    fraction and grouping never trained on the new validation rows. One split otherwise may
    have, and would look better than it is: it is not evaluated, and `skipped` says why.
    """
    if not val or name not in store.names() or not store.list(name):
        return None
    try:
        mv = store.resolve(name)
        theirs = mv.metadata.get("split") or {}
        settings = {
            "seed": theirs.get("seed"),
            "val_fraction": theirs.get("val_fraction"),
            # Versions trained before the conversation key recorded no group_by.
            "group_by": theirs.get("group_by", GROUP_BY_PROMPT),
        }
        differ = [f"{k} {settings[k]!r} (now {split[k]!r})" for k in settings if settings[k] != split[k]]
        if differ:
            reason = f"it was split with {', '.join(differ)}, so it may have trained on this validation split"
            log.warning("not comparing with %s: %s", mv.ref, reason)
            return {"ref": mv.ref, "skipped": reason}
        store.verify(mv)
        scorer = load_scorer(mv)
        try:
            report = evaluate(scorer, val)
        finally:
            scorer.close()
    except Exception as exc:  # an old or damaged version: report it, do not fail training
        log.warning("could not evaluate the previous version of %s: %s", name, exc)
        return None
    return {"ref": mv.ref, **headline(report)}


def _quality_summary(dataset: Dataset) -> dict[str, Any]:
    """Counts of what `plaudit data check` lists in full, plus alpha per shape."""
    full = describe(dataset)
    return {
        "duplicates": len(full["duplicates"]),
        "contradictions": len(full["contradictions"]),
        "warnings": len(full["warnings"]),
        "agreement": {
            shape: {"alpha": a["alpha"], "items": a["items"], "low_agreement": len(a["low_agreement"])}
            for shape, a in full["agreement"].items()
        },
    }


def split_for_eval(examples: list[Example], metadata: dict[str, Any]) -> list[Example]:
    """The validation split a stored model was evaluated on (same fraction and seed)."""
    split = metadata.get("split") or {}
    _, val = split_by_prompt(
        examples,
        val_fraction=split.get("val_fraction", 0.1),
        seed=split.get("seed", 0),
        # Versions trained before the conversation key recorded no group_by.
        group_by=split.get("group_by", GROUP_BY_PROMPT),
    )
    return val
