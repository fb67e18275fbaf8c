"""Engines that run a model: the torch engine, and two weightless test engines.

`deterministic` and `failing` (model_store.engines.deterministic) need no stored model,
so the whole service can be exercised end to end without weights. Submodules are
imported on demand: importing this package never pulls in torch.
"""

from __future__ import annotations

TEST_ENGINES = ("deterministic", "failing")
