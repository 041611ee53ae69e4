"""Runtimes behind one contract (:class:`dualsr_deploy.backends.base.Backend`): torch, ONNX Runtime, TensorRT."""
