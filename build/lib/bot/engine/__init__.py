"""Inference, and nothing of Discord: the bundle format and vocabulary (`bundle`), the n-gram
mixture (`ngram`), the onnxruntime sessions (`sessions`), the continuous-batching scheduler
(`scheduler`), sampling (`sampling`) and the registry of live versions with hot swap
(`registry`). The Discord side, the shell and the export check all write through it."""
