"""`plaudit serve` argument parsing and its one-line errors (the server itself is tested over HTTP)."""

from __future__ import annotations

import argparse

import pytest

from service.cli import register_commands, serve


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="plaudit")
    register_commands(root.add_subparsers(dest="command", required=True))
    return root


def test_serve_options_parse_into_settings_fields(tmp_path):
    args = parser().parse_args(
        [
            "serve",
            "--store",
            str(tmp_path),
            "--model",
            "demo@staging",
            "--engine",
            "deterministic",
            "--device",
            "cpu",
            "--precision",
            "fp32",
            "--host",
            "0.0.0.0",
            "--port",
            "0",
            "--max-batch-items",
            "8",
            "--max-wait-ms",
            "2.5",
            "--threads",
            "2",
            "--engine-workers",
            "2",
        ]
    )
    assert args.func is serve
    assert (args.store_dir, args.model, args.engine, args.precision) == (
        tmp_path,
        "demo@staging",
        "deterministic",
        "fp32",
    )
    assert (args.host, args.port, args.max_batch_items, args.max_wait_ms, args.intra_op_threads) == (
        "0.0.0.0",
        0,
        8,
        2.5,
        2,
    )
    assert args.engine_workers == 2
    assert args.access_log is None  # unset: PLAUDIT_ACCESS_LOG decides
    from service.cli import settings_overrides

    assert "access_log" not in settings_overrides(args)
    assert settings_overrides(parser().parse_args(["serve", "--access-log"]))["access_log"] is True


def test_bad_setting_is_one_line_and_exit_code_2(capsys):
    assert serve(parser().parse_args(["serve", "--engine", "deterministic", "--max-batch-items", "0"])) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("plaudit serve: max_batch_items=0 must be at least 1")


def test_missing_store_or_model_is_reported_before_serving(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert serve(parser().parse_args(["serve", "--store", str(missing), "--model", "demo"])) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(missing) in err and "--store" in err

    assert serve(parser().parse_args(["serve", "--store", str(tmp_path), "--model", "demo"])) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "demo" in err


def test_workers_from_the_environment_get_a_shared_directory_too(monkeypatch):
    from service.cli import _wants_workers

    monkeypatch.delenv("PLAUDIT_WORKERS", raising=False)
    assert not _wants_workers({}) and _wants_workers({"workers": 2}) and not _wants_workers({"workers": 1})
    monkeypatch.setenv("PLAUDIT_WORKERS", "3")
    assert _wants_workers({})  # `PLAUDIT_WORKERS=3 plaudit serve` works like --workers 3
    assert not _wants_workers({"workers": 1})  # the flag wins
    monkeypatch.setenv("PLAUDIT_WORKERS", "three")
    assert not _wants_workers({})  # Settings says what is wrong with it


@pytest.mark.parametrize(
    ("store", "argv", "says"),
    [
        # This machine's onnxruntime has no CUDAExecutionProvider (tests run without a GPU).
        ("trained_store", ["--model", "tiny:1", "--device", "cuda"], "device=cuda needs onnxruntime-gpu"),
        ("trained_store", ["--model", "tiny:1", "--engine", "torch", "--precision", "bf16"], "is for --device cuda"),
        ("linear_store", ["--model", "lin:1", "--engine", "torch"], "lin:1 is a linear model, which runs on --engine onnx only"),
    ],
    ids=["onnx-cuda-without-gpu-build", "torch-bf16-on-cpu", "linear-on-torch"],
)
def test_what_the_version_cannot_run_is_reported_before_serving(store, argv, says, request, capsys):
    # Such a server used to start and answer 503 ("the model failed to load") until killed.
    store_dir = request.getfixturevalue(store)
    capsys.readouterr()  # a store built just now for this test may have drawn progress bars
    assert serve(parser().parse_args(["serve", "--store", str(store_dir), *argv])) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("plaudit serve: ") and says in err, err


@pytest.fixture
def busy_port():
    """A port another server is listening on."""
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def test_a_port_in_use_is_reported_before_the_model_loads(trained_store, busy_port, capsys):
    argv = ["serve", "--store", str(trained_store), "--model", "tiny:1", "--port", str(busy_port)]
    assert serve(parser().parse_args(argv)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"plaudit serve: cannot listen on 127.0.0.1:{busy_port}: Address already in use;")
    assert "--port or PLAUDIT_PORT" in err


def test_plaudit_up_checks_its_port_before_training(tmp_path, busy_port, capsys):
    from plaudit.cli import main

    store = tmp_path / "store"
    assert main(["up", "--store", str(store), "--port", str(busy_port)]) == 2
    captured = capsys.readouterr()
    assert f"plaudit up: cannot listen on 127.0.0.1:{busy_port}" in captured.err
    assert "training" not in captured.out and not store.exists()  # no minutes spent first


def test_an_unknown_host_is_reported_as_the_host_not_the_port():
    from service.cli import listen_problem

    problem = listen_problem("not.a.host.invalid", 8000)
    assert problem is not None and problem.startswith("cannot listen on not.a.host.invalid:8000: ")
    assert "--host or PLAUDIT_HOST" in problem and "port" not in problem.split(": ", 1)[1]


def test_a_client_stalled_mid_body_cannot_hold_a_stop_past_the_request_deadline(monkeypatch):
    # uvicorn waits for open connections on SIGTERM with no limit of its own: a client that
    # sent half a body held one `plaudit serve` until the client gave up.
    import signal
    import socket
    import subprocess

    from tests.service.test_workers import serve_process

    monkeypatch.setenv("PLAUDIT_REQUEST_TIMEOUT_S", "1")
    with serve_process("--engine", "deterministic", workers=1) as (client, proc):
        port = client.base_url.port
        with socket.create_connection(("127.0.0.1", port), timeout=10) as stalled:
            stalled.sendall(
                b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100\r\n\r\n{"
            )
            assert client.get("/healthz").status_code == 200  # the half body has been taken in
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)  # the cap is 1 s + 5 s; the client would wait forever
            except subprocess.TimeoutExpired:
                pytest.fail("the server was still waiting for the stalled client 30 s after SIGTERM")
    assert proc.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled
