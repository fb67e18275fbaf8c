"""Versioned reward models and the code that runs them.

Both `training` (which writes models) and `service` (which serves them) depend on this
package; it depends on neither. Nothing here imports torch except the optional torch
engine in `model_store.engines.torch_engine`.
"""
