"""Training/export scripts (need the ``train`` extra: torch, scikit-learn, skl2onnx)."""
