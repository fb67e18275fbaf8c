"""An acknowledged judgement survives the writer being killed with SIGKILL (SQLite).

A child process posts from several threads and prints each feedback_id once `add` has
returned; the test kills it mid-stream, reopens the database and finds every printed id
exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from service.feedback.store import FeedbackStore

REPO = Path(__file__).resolve().parents[3]
ACKNOWLEDGED_BEFORE_KILL = 60

WRITER = textwrap.dedent(
    """
    import sys, threading
    from service.feedback import FeedbackStore, NewFeedback

    store = FeedbackStore.open(sys.argv[1])
    print_lock = threading.Lock()

    def post(thread):
        index = 0
        while True:
            feedback_id = f"t{thread}-{index}"
            item = NewFeedback(kind="pair", prompt=f"prompt {feedback_id}", chosen="good", rejected="bad",
                               feedback_id=feedback_id)
            store.add(item)
            if index % 5 == 0:
                store.add(item)  # a retry in the stream too
            with print_lock:
                print(feedback_id, flush=True)
            index += 1

    for thread in range(4):
        threading.Thread(target=post, args=(thread,), daemon=True).start()
    threading.Event().wait()
    """
)


@pytest.mark.timeout(120)
def test_acknowledged_rows_survive_sigkill(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    script = tmp_path / "writer.py"
    script.write_text(WRITER, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, str(script), url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        cwd=tmp_path,
    )
    assert child.stdout is not None and child.stderr is not None
    acknowledged: list[str] = []
    try:
        while len(acknowledged) < ACKNOWLEDGED_BEFORE_KILL:
            line = child.stdout.readline()
            if not line:
                pytest.fail(f"the writer exited early ({child.wait()}): {child.stderr.read()}")
            acknowledged.append(line.strip())
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    # Lines written before the kill are still in the pipe.
    acknowledged += [line.strip() for line in child.stdout.read().splitlines() if line.strip()]
    child.stdout.close()
    child.stderr.close()
    assert child.returncode == -signal.SIGKILL

    with FeedbackStore.open(url) as store:
        stored = Counter(row["feedback_id"] for row in store.export())
        with store._engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
    assert len(acknowledged) >= ACKNOWLEDGED_BEFORE_KILL
    assert len(set(acknowledged)) == len(acknowledged)
    missing = [feedback_id for feedback_id in acknowledged if stored[feedback_id] != 1]
    assert missing == []
    assert max(stored.values()) == 1
