"""Settings: defaults, PLAUDIT_* environment variables, and errors that say how to fix them."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import Settings, describe_settings_error


def problem(**values: object) -> str:
    with pytest.raises(ValidationError) as caught:
        Settings(**values)  # type: ignore[arg-type]
    return describe_settings_error(caught.value)


def test_defaults(monkeypatch):
    for name in ("PLAUDIT_ENGINE", "PLAUDIT_MODEL", "PLAUDIT_PORT", "PLAUDIT_STORE_DIR"):
        monkeypatch.delenv(name, raising=False)
    s = Settings()
    assert (s.store_dir, s.model, s.engine, s.device, s.precision) == (
        Path("plaudit-data/models"),
        "default",
        "onnx",
        "cpu",
        "auto",
    )
    assert (s.host, s.port, s.intra_op_threads) == ("127.0.0.1", 8000, None)
    assert (s.max_batch_items, s.max_batch_tokens, s.max_wait_ms, s.max_queue_items) == (None, 2048, 5.0, 2048)
    assert (s.request_timeout_s, s.max_items_per_request, s.max_chars_per_text) == (30, 512, 32000)
    assert (s.max_body_bytes, s.tokenize_workers) == (8 * 1024 * 1024, 1)


def test_engine_threads_are_the_cores_shared_out_among_workers_unless_set():
    from service.settings import EngineLayout, available_cores

    cores = available_cores()
    # Engines other than ONNX on the CPU: one worker on every core, batches of 8.
    for settings in (Settings(engine="torch"), Settings(device="cuda"), Settings(engine="deterministic")):
        assert settings.engine_layout("fp32") == EngineLayout(workers=1, threads_per_call=cores, max_batch_items=8)
    torch = {"engine": "torch"}
    assert Settings(max_batch_items=32, **torch).engine_layout("fp32").max_batch_items == 32
    assert Settings(engine_workers=2, **torch).engine_layout("fp32") == EngineLayout(2, max(1, cores // 2))
    assert Settings(engine_workers=64, **torch).engine_layout("fp32") == EngineLayout(64, 1)
    assert Settings(engine_workers=2, intra_op_threads=3, **torch).engine_layout("fp32") == EngineLayout(2, 3)
    with pytest.raises(ValidationError, match="engine_workers"):
        Settings(engine_workers=0)


def test_each_of_several_server_workers_gets_its_share_of_the_cores(monkeypatch, tmp_path):
    from service import settings as settings_module

    monkeypatch.setattr(settings_module, "available_cores", lambda: 16)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    assert Settings(engine="torch", workers=4).engine_layout("bf16").threads_per_call == 4
    assert Settings(engine="torch", workers=4, engine_workers=2).engine_layout("bf16").threads_per_call == 2
    onnx = Settings(engine="onnx", workers=4).engine_layout("fp32")
    assert (onnx.workers, onnx.threads_per_call, onnx.lone_call_threads) == (4, 1, 4)
    assert Settings(engine="torch", workers=32).engine_layout("bf16").threads_per_call == 1


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_the_onnx_cpu_engine_gets_a_single_threaded_worker_per_core_and_a_lone_call_on_every_core(precision):
    from service.settings import EngineLayout, available_cores

    cores = available_cores()
    # fp32 gives a lone call its own session when that adds threads; int8 runs it like any call.
    wide = cores if cores > 1 and precision == "fp32" else None
    assert Settings().engine_layout(precision) == EngineLayout(
        workers=cores, threads_per_call=1, max_batch_items=2, lone_call_threads=wide
    )
    # Whatever the operator set wins, and the rest follows from it; the batch cap of 2 goes
    # with single-threaded calls, however they came about, and in fp32 any call on fewer
    # threads than the cores has a lone-call session beside it.
    multi_threaded_cap = 2 if cores == 1 else 8
    assert Settings(engine_workers=1).engine_layout(precision) == EngineLayout(1, cores, multi_threaded_cap)
    assert Settings(intra_op_threads=2).engine_layout(precision) == EngineLayout(
        1, 2, 8, cores if cores > 2 and precision == "fp32" else None
    )
    assert Settings(engine_workers=2, intra_op_threads=1).engine_layout(precision) == EngineLayout(2, 1, 2, wide)
    assert Settings(engine_workers=64).engine_layout(precision) == EngineLayout(64, 1, 2, wide)
    assert Settings(max_batch_items=5).engine_layout(precision) == EngineLayout(cores, 1, 5, wide)


def test_environment_variables_with_prefix(monkeypatch):
    monkeypatch.setenv("PLAUDIT_ENGINE", "Deterministic")
    monkeypatch.setenv("PLAUDIT_MAX_BATCH_ITEMS", "8")
    monkeypatch.setenv("PLAUDIT_ENGINE_OPTIONS", '{"delay_s": 0.5}')
    monkeypatch.setenv("PLAUDIT_TEST_POSTGRES_URL", "postgresql://elsewhere")  # not ours: ignored
    s = Settings()
    assert s.engine == "deterministic" and s.max_batch_items == 8 and s.engine_options == {"delay_s": 0.5}
    assert Settings(engine="failing").engine == "failing"  # arguments win over the environment


def env_problem(monkeypatch, name: str, value: str) -> str:
    """What Settings() says of one bad environment variable (a ValidationError, not a traceback)."""
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as info:
        Settings()
    return describe_settings_error(info.value)


def test_json_settings_that_are_not_json_name_the_variable_and_an_example(monkeypatch):
    # pydantic-settings decodes such variables itself and raised SettingsError: a traceback.
    message = env_problem(monkeypatch, "PLAUDIT_ENGINE_OPTIONS", '{"delay_s":')
    assert message.startswith("PLAUDIT_ENGINE_OPTIONS '{\"delay_s\":' is not valid JSON (Expecting value")
    assert 'set it to JSON such as {"delay_s": 0.1}' in message
    monkeypatch.delenv("PLAUDIT_ENGINE_OPTIONS")
    message = env_problem(monkeypatch, "PLAUDIT_API_KEYS", '{"secret-key-123456789": ["score"]')
    assert message.startswith("PLAUDIT_API_KEYS is not valid JSON (") and 'such as {"KEY": ["score"]}' in message
    assert "secret-key" not in message  # keys are never echoed
    monkeypatch.delenv("PLAUDIT_API_KEYS")
    message = env_problem(monkeypatch, "PLAUDIT_CORS_ORIGINS", '["https://a.example"')
    assert "PLAUDIT_CORS_ORIGINS" in message and "is not valid JSON" in message


def test_a_feedback_database_url_of_the_wrong_form_stops_the_server_at_start():
    # It used to be only logged: the server started, ready, with /v1/feedback answering 503.
    message = problem(feedback_db="mysql://user:pw@db/plaudit")
    assert "uses 'mysql', which is not supported" in message and "fix PLAUDIT_FEEDBACK_DB" in message
    assert "pw" not in message  # the password is hidden
    assert "in-memory SQLite database" in problem(feedback_db="sqlite://")
    assert Settings(feedback_db="postgresql://u@127.0.0.1:1/test").feedback_db  # form only: not connected
    # With feedback off the URL is never used: not judged either (such a configuration started before).
    assert Settings(feedback_enabled=False, feedback_db="sqlite://").feedback_url() is None


def test_json_null_in_the_environment_means_the_default(monkeypatch):
    for name in ("PLAUDIT_ENGINE_OPTIONS", "PLAUDIT_CORS_ORIGINS", "PLAUDIT_API_KEYS"):
        monkeypatch.setenv(name, "null")
    settings = Settings()
    assert (settings.engine_options, settings.cors_origins, settings.api_key_scopes()) == ({}, [], {})


def test_cors_origins_from_the_environment_as_json_or_separated_by_commas(monkeypatch):
    monkeypatch.setenv("PLAUDIT_CORS_ORIGINS", '["https://a.example", "http://localhost:3000"]')
    assert Settings().cors_origins == ["https://a.example", "http://localhost:3000"]
    monkeypatch.setenv("PLAUDIT_CORS_ORIGINS", "https://a.example, http://localhost:3000")
    assert Settings().cors_origins == ["https://a.example", "http://localhost:3000"]
    assert "'https://a.example/' is not an origin" in env_problem(monkeypatch, "PLAUDIT_CORS_ORIGINS", "https://a.example/")


def test_bad_choices_name_the_setting_and_the_choices():
    message = problem(engine="tensorrt")
    assert "engine='tensorrt' is not supported" in message
    assert "PLAUDIT_ENGINE" in message and "onnx, torch, deterministic, failing" in message
    assert "cpu, cuda" in problem(device="tpu")
    assert "auto, fp32, fp16, bf16, int8" in problem(precision="fp8")


def test_bad_numbers_say_how_to_fix_them():
    assert "max_batch_items=0 must be at least 1; set PLAUDIT_MAX_BATCH_ITEMS" in problem(max_batch_items=0)
    assert "PLAUDIT_MAX_WAIT_MS" in problem(max_wait_ms=-1)
    assert "PLAUDIT_REQUEST_TIMEOUT_S" in problem(request_timeout_s=0)
    # NaN passes every comparison: unchecked, it would make every request time out at once.
    for bad in ("nan", "inf"):
        assert "request_timeout_s=" + bad + " must be positive and finite" in problem(request_timeout_s=bad)
        assert "PLAUDIT_MAX_WAIT_MS" in problem(max_wait_ms=bad)
    assert "PLAUDIT_PORT" in problem(port=70000)
    assert "prefetch_batches=-1 must be between 0 and 16; set PLAUDIT_PREFETCH_BATCHES" in problem(prefetch_batches=-1)
    assert "leave PLAUDIT_INTRA_OP_THREADS unset" in problem(intra_op_threads=0)
    assert "PLAUDIT_MODEL" in problem(model="  ")
    assert "max_batch_tokens: Input should be a valid integer" in problem(max_batch_tokens="many")
    assert "intra_op_spinning: Input should be a valid boolean" in problem(intra_op_spinning="sometimes")


def test_inconsistent_settings_are_refused():
    message = problem(max_items_per_request=100, max_queue_items=10)
    assert "max_items_per_request=100 exceeds max_queue_items=10" in message
    assert "for the test engines only" in problem(engine="onnx", engine_options={"delay_s": 1})
    message = problem(engine="torch", precision="int8")
    assert "--engine torch cannot run precision int8" in message and "int8 runs on --engine onnx" in message
    assert "PLAUDIT_PRECISION" in message
    assert "bf16 runs on --engine torch" in problem(engine="onnx", precision="bf16")


def test_several_workers_need_a_shared_directory_and_follow_the_store(monkeypatch, tmp_path):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    assert "workers=0 must be at least 1; set PLAUDIT_WORKERS" in problem(workers=0)
    message = problem(workers=2)
    assert "workers=2 needs PROMETHEUS_MULTIPROC_DIR" in message and "plaudit serve --workers 2" in message

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    assert Settings(workers=2).model_poll_interval_s == 2.0  # how a promote reaches every worker
    assert Settings(workers=2, model_poll_s=0.5).model_poll_interval_s == 0.5
    assert "would leave the other workers on the old model" in problem(workers=2, model_poll_s=0)
    assert Settings().model_poll_interval_s == 0.0  # one worker: reload or promote reaches it
    assert "model_poll_s=-1.0 must be 0 (never) or a positive number" in problem(model_poll_s=-1)
    assert "PLAUDIT_MODEL_POLL_S" in problem(model_poll_s="nan")


def test_the_uvicorn_factory_ends_on_a_bad_variable_with_the_one_line_message(monkeypatch, capsys):
    from uvicorn.config import STARTUP_FAILURE

    from service.app import create_app

    monkeypatch.setenv("PLAUDIT_ENGINE", "tensorrt")
    with pytest.raises(SystemExit) as info:
        create_app()
    # uvicorn's own status for a worker that cannot start: its supervisor stops rather than retries
    assert info.value.code == STARTUP_FAILURE
    assert capsys.readouterr().err.startswith("plaudit: engine='tensorrt' is not supported")


@pytest.mark.parametrize("model", ["nosuch", "lin:7"])
def test_the_uvicorn_factory_ends_on_a_model_that_is_not_in_the_store(monkeypatch, capsys, linear_store, model):
    # It stayed up answering /readyz 503 for good, where `plaudit serve` stopped with a line.
    from uvicorn.config import STARTUP_FAILURE

    from service.app import create_app

    monkeypatch.setenv("PLAUDIT_STORE_DIR", str(linear_store))
    monkeypatch.setenv("PLAUDIT_MODEL", model)
    with pytest.raises(SystemExit) as info:
        create_app()
    assert info.value.code == STARTUP_FAILURE
    err = capsys.readouterr().err
    assert err.startswith("plaudit: ") and len(err.strip().splitlines()) == 1
    assert ("no model named 'nosuch'" if model == "nosuch" else "has no version 7") in err


def test_a_misspelt_variable_is_named_with_the_nearest_setting_when_the_app_is_built(monkeypatch, caplog, tmp_path):
    # Settings ignores PLAUDIT_* names it does not know: without this, the default stays in force silently.
    import logging

    from service.app import create_app

    monkeypatch.setenv("PLAUDIT_MODLE", "mine")
    monkeypatch.setenv("PLAUDIT_NAIVE_ONNX_OPTIONS", "plaudit")  # the benchmarks' naive server reads it
    monkeypatch.setenv("plaudit_max_wait_ms", "2")  # a setting, in any case
    monkeypatch.setenv("PLAUDIT_ZZZ", "1")
    caplog.set_level(logging.WARNING, logger="plaudit.service")
    create_app(Settings(engine="deterministic", feedback_db=f"sqlite:///{tmp_path / 'f.db'}"))
    warnings = [r.getMessage() for r in caplog.records if "is not a Plaudit setting" in r.getMessage()]
    assert warnings == [
        "PLAUDIT_MODLE is not a Plaudit setting and is ignored; did you mean PLAUDIT_MODEL?",
        "PLAUDIT_ZZZ is not a Plaudit setting and is ignored; see the Settings table in the README",
    ]
