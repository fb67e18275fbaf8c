"""Where a stored version's ONNX time goes, by operator type, at each precision.

    python -m loadtest.bench_ops --store DIR --model REF [--data PATH] [--items 40]
        [--precision fp32 int8] [--threads 1] [--out ops.json]

Each precision's file runs one item at a time on one session with the engine's own options
(`session_options`, and the exact-integer-product setting where this CPU needs it, so the
int8 kernel profiled is the one served), with ONNX Runtime's profiler on. After a few
warm-up items, the kernel time of every node is summed by operator type and divided by the
items. The matrix products (MatMul, FusedMatMul, Gemm, MatMulIntegerToFloat) are set apart
from the rest: int8 speeds up only the first part, so the rest bounds what it can gain.
It measures in-process kernel time, not serving; the machine line says which CPU it ran on.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loadtest.data import load_items, synthetic_items
from loadtest.machine import describe_machine, machine_line

if TYPE_CHECKING:
    from model_store.store import ModelVersion

MATRIX_PRODUCTS = frozenset({"MatMul", "FusedMatMul", "Gemm", "MatMulIntegerToFloat", "MatMulInteger"})
WARMUP_ITEMS = 3


def kernel_time_by_op(profile: Sequence[dict[str, Any]], skip_runs: int) -> tuple[Counter[str], Counter[str], int]:
    """(microseconds, node runs) per operator type, and the runs counted, from an ONNX Runtime
    profile (its JSON events), leaving out the node events of the first `skip_runs` runs."""
    runs = sorted(e["ts"] for e in profile if e.get("cat") == "Session" and e.get("name") == "model_run")
    if len(runs) <= skip_runs:
        return Counter(), Counter(), 0
    start = runs[skip_runs]
    micros: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    for event in profile:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time") and event["ts"] >= start:
            op = event["args"]["op_name"]
            micros[op] += event["dur"]
            calls[op] += 1
    return micros, calls, len(runs) - skip_runs


def verified_version(store_dir: Path, ref: str) -> ModelVersion:
    """`ref`'s ModelVersion in `store_dir`, its checksums checked (once for all precisions)."""
    from model_store.store import ModelStore

    store = ModelStore(store_dir)
    version = store.resolve(ref)
    store.verify(version)
    return version


def profile_precision(version: ModelVersion, precision: str, items: Sequence[Any], threads: int) -> dict[str, Any]:
    """Run `items` one at a time through `version`'s `precision` file with profiling on."""
    from model_store.loading import load_scorer
    from model_store.onnx_scorer import session_options

    ref = version.ref
    with tempfile.TemporaryDirectory(prefix="plaudit-ops-") as folder:
        options = session_options(threads)
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "ort")
        scorer = load_scorer(version, engine="onnx", precision=precision, onnx_options=options)
        encoded = scorer.encode(list(items))
        warmup = encoded[:WARMUP_ITEMS]
        for item in warmup + encoded:
            scorer.run([item])
        scorer.close()  # ONNX Runtime writes the profile when the session goes
        written = sorted(Path(folder).glob("ort*.json"))
        if not written:
            raise RuntimeError(f"ONNX Runtime wrote no profile for {ref} ({precision})")
        micros, calls, runs = kernel_time_by_op(json.loads(written[-1].read_text()), len(warmup))
    if runs == 0:
        raise RuntimeError(f"no profiled run of {ref} ({precision}) after the warm-up")
    ops = {
        op: {"ms_per_item": micros[op] / runs / 1000.0, "nodes_per_item": calls[op] / runs}
        for op, _ in micros.most_common()
    }
    products = sum(v["ms_per_item"] for op, v in ops.items() if op in MATRIX_PRODUCTS)
    total = sum(v["ms_per_item"] for v in ops.values())
    return {
        "items": runs,
        "ms_per_item": total,
        "matrix_products_ms_per_item": products,
        "other_ms_per_item": total - products,
        "node_runs_per_item": sum(v["nodes_per_item"] for v in ops.values()),
        "ops": ops,
    }


def format_results(results: dict[str, Any], top: int = 12) -> str:
    lines = [machine_line(results["machine"]), f"model {results['model']}, {results['threads']} thread(s), batch 1"]
    for precision, r in results["precisions"].items():
        lines.append(
            f"{precision}: {r['ms_per_item']:.2f} ms per item in kernels over {r['items']} items "
            f"({r['node_runs_per_item']:.0f} node runs): matrix products {r['matrix_products_ms_per_item']:.2f} ms, "
            f"everything else {r['other_ms_per_item']:.2f} ms"
        )
        for op, v in list(r["ops"].items())[:top]:
            lines.append(f"  {op:<24} {v['ms_per_item']:7.2f} ms  {v['nodes_per_item']:5.0f} nodes")
    p = results["precisions"]
    if "fp32" in p and "int8" in p:
        lines.append(
            f"fp32 / int8 kernel time: x{p['fp32']['ms_per_item'] / p['int8']['ms_per_item']:.2f} in all, "
            f"x{p['fp32']['matrix_products_ms_per_item'] / p['int8']['matrix_products_ms_per_item']:.2f} "
            "in the matrix products"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench_ops", description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--model", required=True, help="NAME[@alias|:version]")
    parser.add_argument("--data", help="items to run (JSONL, as plaudit loadtest reads); synthetic if omitted")
    parser.add_argument("--items", type=int, default=40)
    parser.add_argument("--precision", nargs="+", default=["fp32", "int8"], choices=["fp32", "int8"])
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (the served layout uses 1)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.items < 1 or args.threads < 1:
        parser.error("--items and --threads must be at least 1")
    items = load_items(args.data, limit=args.items) if args.data else synthetic_items(args.items)
    version = verified_version(args.store, args.model)
    results: dict[str, Any] = {
        "machine": describe_machine(),
        "model": args.model,
        "threads": args.threads,
        "precisions": {p: profile_precision(version, p, items, args.threads) for p in args.precision},
    }
    print(format_results(results))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
