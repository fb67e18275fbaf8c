"""Training benchmark on the real HH harmless pairs: Plaudit's trainers against TRL's RewardTrainer.

    python -m loadtest.bench_training --data ../shared/data/hh-harmless/pairs.jsonl

In ONE run, on the same grouped train/validation split, it trains
  1. Plaudit's transformer reward model (MiniLM-L6 by default) through the full pipeline
     (train -> ONNX export -> parity gate -> evaluation through ONNX Runtime -> store),
  2. Plaudit's linear model the same way,
  3. TRL's RewardTrainer on the same backbone, data, epochs and max length, fed the very same
     token ids (prompt truncated from the left), evaluated on the same validation pairs,
and prints accuracy and wall time for each. Results also go to --out as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from loadtest.machine import describe_machine, machine_line

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def run_plaudit(kind: str, data: str, store: Path, args: argparse.Namespace) -> dict[str, Any]:
    from training.cli import transformer_config
    from training.pipeline import TrainJob, run_training

    job = TrainJob(
        data=[data],
        store=store,
        name=f"hh-{kind}",
        kind=kind,
        seed=args.seed,
        transformer=transformer_config(args),
        quantize=kind == "transformer",
        progress=not args.no_progress,
    )
    started = time.perf_counter()
    outcome = run_training(job)
    seconds = time.perf_counter() - started
    meta = outcome.version.metadata
    result = {
        "accuracy": outcome.metrics["pairwise_accuracy"],
        "wall_seconds": round(seconds, 1),
        "val_pairs": outcome.metrics["validation"]["pairs"]["n"],
        "ref": outcome.version.ref,
    }
    if kind == "transformer":
        result["parity"] = meta["parity"]
        result["int8"] = meta.get("int8")
        result["served_precision"] = meta.get("default_precision", "fp32")  # what `accuracy` measured
    return result


def run_trl(data: str, args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    from model_store.scoring import TextPair
    from model_store.tokenization import PairTokenizer, pad_batch
    from training.data.loaders import load_dataset
    from training.data.split import split_by_prompt
    from training.transformer_trainer import TransformerConfig

    backbone = TransformerConfig(backbone=args.backbone).backbone_dir()
    tok = PairTokenizer.from_dir(backbone, args.max_length)
    train, val = split_by_prompt(load_dataset([data]).pairs, val_fraction=0.1, seed=args.seed)

    def rows(examples: list) -> dict[str, list]:
        chosen = tok.encode([TextPair(e.prompt, e.chosen) for e in examples])
        rejected = tok.encode([TextPair(e.prompt, e.rejected) for e in examples])
        # TRL's pre-tokenized form: it then skips its own tokenization (and its max_length filter)
        return {
            "chosen_ids": [c.input_ids.tolist() for c in chosen],
            "rejected_ids": [r.input_ids.tolist() for r in rejected],
        }

    torch.manual_seed(args.seed)
    model = AutoModelForSequenceClassification.from_pretrained(backbone, num_labels=1, local_files_only=True)
    hf_tok = AutoTokenizer.from_pretrained(backbone, local_files_only=True)
    with tempfile.TemporaryDirectory() as out:
        config = RewardConfig(
            output_dir=out,
            num_train_epochs=args.epochs,
            per_device_train_batch_size=args.batch_size,
            learning_rate=args.lr,
            warmup_steps=max(1, int(0.1 * args.epochs * len(train) / args.batch_size)),  # Plaudit's 10%
            max_length=args.max_length,
            gradient_checkpointing=False,  # TRL's default recomputes activations: slower, and Plaudit does not
            # TRL defaults to bf16 autocast; on CPUs without native bf16 (AVX2 only, as here)
            # that is emulated and about 18x slower per step. Plaudit trains in fp32, so TRL does too.
            bf16=False,
            logging_steps=20,
            save_strategy="no",
            report_to=[],
            seed=args.seed,
            use_cpu=True,
            disable_tqdm=args.no_progress,
        )
        trainer = RewardTrainer(model=model, args=config, train_dataset=Dataset.from_dict(rows(train)), processing_class=hf_tok)
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
    model.eval()
    texts = [TextPair(e.prompt, e.chosen) for e in val] + [TextPair(e.prompt, e.rejected) for e in val]
    encoded = tok.encode(texts)
    scores = np.zeros(len(encoded), dtype=np.float32)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    with torch.inference_mode():
        for s in range(0, len(order), 64):
            idx = order[s : s + 64]
            feeds = {k: torch.from_numpy(v) for k, v in pad_batch([encoded[i] for i in idx]).items()}
            scores[idx] = model(**feeds).logits.squeeze(-1).numpy()
    diff = scores[: len(val)] - scores[len(val) :]
    accuracy = float(np.mean((diff > 0) + 0.5 * (diff == 0)))
    return {"accuracy": accuracy, "wall_seconds": round(seconds, 1), "val_pairs": len(val)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/hh-harmless/pairs.jsonl")
    parser.add_argument("--backbone", default=None, help="default: all-MiniLM-L6-v2")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--freeze-layers", type=int, default=3,
        help="Plaudit freezes the embeddings and this many lower encoder layers (MiniLM-L6 has 6); TRL trains all",
    )
    parser.add_argument("--ema-decay", type=float, default=0.0, help="Plaudit validates and exports an EMA of its weights (0 = off)")
    parser.add_argument("--label-smoothing", type=float, default=0.0, help="Plaudit's Bradley-Terry label smoothing (0 = off)")
    parser.add_argument("--layer-lr-decay", type=float, default=1.0, help="Plaudit's layer-wise lr decay (1 = off)")
    parser.add_argument("--evals-per-epoch", type=int, default=4, help="validation checks (and early-stopping points) per epoch")
    parser.add_argument("--skip", action="append", default=[], choices=("transformer", "linear", "trl"))
    parser.add_argument("--out", default="bench-out/training.json")
    parser.add_argument("--store", default="bench-out/store", help="where the trained models are registered (the serving benchmark reuses them)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if not Path(args.data).is_file():
        print(f"skipping: {args.data} not found (the HH harmless pairs live in ../shared/data)", file=sys.stderr)
        return 0
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    results: dict[str, Any] = {"config": {k: v for k, v in vars(args).items() if k not in ("skip", "no_progress")}, "machine": describe_machine()}
    print(machine_line(results["machine"]), flush=True)
    for kind in ("linear", "transformer"):
        if kind not in args.skip:
            results[kind] = run_plaudit(kind, args.data, Path(args.store), args)
            print(f"plaudit {kind}: {json.dumps(results[kind])}", flush=True)
    if "trl" not in args.skip:
        results["trl"] = run_trl(args.data, args)
        print(f"trl RewardTrainer: {json.dumps(results['trl'])}", flush=True)

    print(f"\n{'trainer':<28}{'val accuracy':>14}{'wall s':>10}")
    for key, label in (("transformer", "plaudit transformer"), ("linear", "plaudit linear"), ("trl", "TRL RewardTrainer")):
        if key in results:
            print(f"{label:<28}{results[key]['accuracy']:>14.4f}{results[key]['wall_seconds']:>10.1f}")
    int8 = (results.get("transformer") or {}).get("int8")
    if int8 and "pairwise_accuracy_int8" in int8:
        print(
            f"plaudit transformer by precision: fp32 {int8['pairwise_accuracy_fp32']:.4f}, "
            f"int8 {int8['pairwise_accuracy_int8']:.4f} (decision agreement "
            f"{int8['decision_agreement_vs_fp32']:.4f}); served by default: {results['transformer']['served_precision']}"
        )
    if "transformer" in results and "trl" in results:
        print(f"wall-time ratio TRL / plaudit transformer: {results['trl']['wall_seconds'] / results['transformer']['wall_seconds']:.2f}x")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
