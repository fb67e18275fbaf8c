"""The feedback durability benchmark's parts; the entry point is loadtest.bench_feedback."""
