"""Offline side of Plaudit: data -> reward model -> evaluation -> ONNX -> model store."""
