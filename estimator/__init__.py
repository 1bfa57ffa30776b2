"""estimate: inference cost estimator for ONNX models, checked against measurement."""

__version__ = "0.1.0"
