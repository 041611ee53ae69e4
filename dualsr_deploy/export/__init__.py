"""Converters from the folded CoarSR to deployment artefacts (ONNX now; TensorRT plans from the ONNX)."""
