"""``inferd optimize``: build faster candidates of a served ONNX model, prove them on samples, write
the best as the next version (docs/optimize.md)."""
