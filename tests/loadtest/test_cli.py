from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from loadtest.cli import register_commands
from loadtest.data import ItemCycle, synthetic_items
from loadtest.generator import LoadConfig, TargetError, check_target, is_loopback_host, run_load_sync


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="plaudit")
    register_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


@pytest.mark.parametrize(
    "host", ["localhost", "LOCALHOST", "127.0.0.1", "127.1.2.3", "::1", "[::1]"]
)
def test_loopback_hosts(host: str) -> None:
    assert is_loopback_host(host)


@pytest.mark.parametrize("host", ["10.0.0.1", "0.0.0.0", "example.com", "localhost.example.com", "::"])
def test_non_loopback_hosts(host: str) -> None:
    assert not is_loopback_host(host)


def test_non_loopback_url_is_refused_unless_allowed() -> None:
    with pytest.raises(TargetError, match=r"not loopback.*--allow-remote"):
        check_target("http://example.com:8000")
    check_target("http://example.com:8000", allow_remote=True)
    check_target("http://[::1]:8000")


def test_malformed_urls_are_refused() -> None:
    with pytest.raises(TargetError, match="expected http"):
        check_target("ftp://127.0.0.1/")
    with pytest.raises(TargetError, match="expected http"):
        check_target("127.0.0.1:8000")


def test_generator_refuses_remote_before_sending_anything() -> None:
    config = LoadConfig(url="http://192.0.2.1:8000", requests=1)
    with pytest.raises(TargetError, match="192.0.2.1"):
        run_load_sync(config, ItemCycle(synthetic_items(1)))


def test_cli_refuses_remote_url_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["loadtest", "--url", "http://10.1.2.3:8000", "--requests", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("plaudit loadtest: refusing to load-test http://10.1.2.3:8000")
    assert "\n" not in err


def test_cli_reports_bad_data_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps({"text": "x"}) + "\n")
    assert _run(["loadtest", "--data", str(data)]) == 2
    assert f"{data}:1: unrecognised row" in capsys.readouterr().err


def test_cli_rejects_non_positive_counts(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _run(["loadtest", "--concurrency", "0"])
    assert "must be at least 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("concurrency", 0, "concurrency must be at least 1"),
        ("rate", 0.0, "rate must be a positive"),
        ("duration_s", -1.0, "duration_s must be positive"),
        ("endpoint", "bogus", "endpoint must be one of"),
    ],
)
def test_load_config_validates(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LoadConfig(**{field: value})  # type: ignore[arg-type]
