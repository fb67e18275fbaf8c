"""The Plaudit scoring service: FastAPI in front of a dynamic batcher and a Scorer.

Build an app with `service.app.create_app(settings)`; run it with `plaudit serve` or
`uvicorn --factory service.app:create_app`.
"""
