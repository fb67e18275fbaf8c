"""Load testing for the scoring service: a load generator, a naive baseline server to
compare against, and the serving benchmark that runs both.

Kept light on purpose: nothing here imports `training` or torch, and the model is only
loaded (through `model_store`) by the naive server and the benchmark's ceiling step.
"""
