"""Validation runner: measure ONNX models with onnxruntime (the only package that imports it).

Modules: ``runner`` (the sweep), ``modelprep`` (model resolution, generated weights and inputs,
FP16/INT8 variants), ``profile_join`` (per-layer kernel times joined to the original nodes),
``stats`` (nearest-rank percentiles), ``host`` (CPU, caches, load, memory), ``results``
(schema, atomic files, summary), ``mlperf`` (LoadGen scenarios), ``cli`` (typer commands).
"""
