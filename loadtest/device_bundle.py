"""Pack what the GPU benchmark needs for a lent GPU machine, and unpack it there.

The machine has Python 3.12 with torch, transformers and tokenizers, but not the service's
packages, and nothing can be fetched there. What travels is capped at 64 MiB, which an fp32
MiniLM version (an 87 MB ONNX file plus 87 MB of torch weights) does not fit. So:

    # here
    python -m loadtest.device_bundle pack --store bench-out/store --model hh-transformer \\
        --data ../shared/data/hh-harmless/pairs.jsonl --out .device-bundle
    # there (loadtest/gpu_check.sh does this, then runs loadtest.bench_gpu)
    python3 -m loadtest.device_bundle register --bundle .device-bundle --store /tmp/store

`pack` writes the version's torch weights in fp16 (the GPU engine runs bf16 or fp16 anyway),
its tokenizer, the metadata the torch engine reads, the data file, and Python 3.12 wheels
of the service's packages that the machine lacks. `register` puts the model into a fresh
store there as a normal, checksummed version, so the benchmark loads it through the same
store -> verify -> load_scorer path as the service.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

# The service's packages that the GPU machine's image lacks (see the device tool's package
# list), pinned to the versions installed here, which the tests ran against.
WHEELS = (
    "fastapi", "starlette", "pydantic", "pydantic-core", "pydantic-settings", "python-dotenv",
    "annotated-types", "typing-inspection", "typing-extensions", "opentelemetry-api", "uvicorn",
    "httptools", "sqlalchemy", "alembic", "mako", "sniffio", "anyio",
)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
# What the benchmark reads from a version's metadata (the rest stays behind).
CARRY_LIMIT_BYTES = 64 * 2**20
REPO_ALLOWANCE_BYTES = 4 * 2**20  # the project's own files travel in the same 64 MiB
KEPT_METADATA = ("kind", "max_length", "pooling", "backbone_name", "objectives", "default_precision")


class BundleError(RuntimeError):
    """The bundle cannot be made or read; the message says which file or step."""


def pack_model(version_dir: Path, meta: dict[str, Any], out: Path) -> None:
    """The torch weights in fp16, the torch config, the tokenizer and a metadata subset."""
    from safetensors.torch import load_file, save_file

    torch_dir = version_dir / "torch"
    model_dir = out / "model"
    shutil.copytree(version_dir / "tokenizer", model_dir / "tokenizer")
    (model_dir / "torch").mkdir(parents=True)
    for path in torch_dir.iterdir():
        if path.suffix != ".safetensors":
            shutil.copy2(path, model_dir / "torch" / path.name)
    for path in torch_dir.glob("*.safetensors"):
        state = load_file(str(path))
        half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
        save_file(half, str(model_dir / "torch" / path.name))
    kept = {k: meta[k] for k in KEPT_METADATA if k in meta}
    kept["packed_from"] = {
        "ref": f"{meta.get('name')}:{meta.get('version')}",
        "files": {k: v for k, v in meta.get("files", {}).items() if k.startswith("torch/")},
        "weights": "fp16 copy of the fp32 torch weights",
    }
    (out / "model.json").write_text(json.dumps(kept, indent=2) + "\n")


def download_wheels(out: Path, python_version: str = "3.12") -> list[str]:
    """pip download of WHEELS at the versions installed here, for CPython `python_version`."""
    pins = []
    for name in WHEELS:
        try:
            pins.append(f"{name}=={importlib_metadata.version(name)}")
        except importlib_metadata.PackageNotFoundError:
            raise BundleError(f"{name} is not installed here, so its version is unknown; install the project first") from None
    cmd = [
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
        "--python-version", python_version, "--implementation", "cp", "--dest", str(out),
        *[arg for platform in PLATFORMS for arg in ("--platform", platform)],
        *pins,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise BundleError(f"pip download failed:\n{done.stderr[-2000:]}")
    return pins


def pack(store_dir: Path, model_ref: str, data: Path | None, out: Path, wheels: bool = True) -> dict[str, Any]:
    from model_store.store import ModelStore

    store = ModelStore(store_dir)
    version = store.resolve(model_ref)
    store.verify(version)
    if version.metadata.get("kind") != "transformer" or not (Path(version.path) / "torch").is_dir():
        raise BundleError(
            f"{version.ref}: only transformer versions with a torch/ folder run on the GPU engine "
            f"(kind {version.metadata.get('kind')!r})"
        )
    if out.exists():
        raise BundleError(f"{out} exists; remove it or pick another --out")
    out.mkdir(parents=True)
    pack_model(Path(version.path), dict(version.metadata), out)
    if data is not None:
        if not data.is_file():
            raise BundleError(f"--data {data}: no such file")
        (out / "data").mkdir()
        shutil.copy2(data, out / "data" / "items.jsonl")
    pins = download_wheels(out / "wheels") if wheels else []
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    # The device tool carries the working tree and the bundle together, 64 MiB in all.
    room = CARRY_LIMIT_BYTES - REPO_ALLOWANCE_BYTES
    return {"ref": version.ref, "bundle": str(out), "bytes": size, "fits_carry_limit": size <= room, "wheels": pins}


def register(bundle: Path, store_dir: Path, name: str) -> str:
    """Register the bundled model as a new version of `name` in `store_dir`; returns its ref."""
    from model_store.store import ModelStore

    meta_file = bundle / "model.json"
    if not meta_file.is_file():
        raise BundleError(f"{bundle}: no model.json; make the bundle with `pack`")
    meta = json.loads(meta_file.read_text())
    version = ModelStore(store_dir).register(name, bundle / "model", meta)
    return version.ref


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.device_bundle", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="here: model (fp16 torch weights), data and wheels into one folder")
    p.add_argument("--store", required=True, type=Path)
    p.add_argument("--model", required=True, help="NAME, NAME@ALIAS or NAME:VERSION")
    p.add_argument("--data", type=Path, help="items or pairs JSONL to carry along")
    p.add_argument("--out", type=Path, default=Path(".device-bundle"))
    p.add_argument("--no-wheels", action="store_true", help="skip the pip download")
    r = sub.add_parser("register", help="there: the bundled model into a fresh store")
    r.add_argument("--bundle", type=Path, default=Path(".device-bundle"))
    r.add_argument("--store", required=True, type=Path)
    r.add_argument("--name", default="gpu-bench")
    args = parser.parse_args(argv)
    from model_store.errors import StoreError

    try:
        if args.command == "pack":
            packed = pack(args.store, args.model, args.data, args.out, wheels=not args.no_wheels)
            print(json.dumps(packed, indent=2))
            if not packed["fits_carry_limit"]:
                print(f"device_bundle: {packed['bytes'] / 2**20:.1f} MiB is too much to carry with the repo (64 MiB in all)", file=sys.stderr)
                return 1
        else:
            print(register(args.bundle, args.store, args.name))
    except (BundleError, StoreError, OSError) as exc:
        print(f"device_bundle: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
