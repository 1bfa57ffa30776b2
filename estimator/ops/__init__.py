"""Cost functions, one per ONNX op type. Importing this package registers all of them.

Modules by family: elementwise (one table of per-element costs), conv, linalg (Gemm, MatMul,
Einsum), norm (normalizations, softmax), pool, resize, data (data movement), reduce, rnn,
quant, attention, spectral, microsoft (com.microsoft and com.microsoft.nchwc).
"""

from . import (attention, conv, data, elementwise, linalg, microsoft, norm, pool,  # noqa: F401
               quant, reduce, resize, rnn, spectral)
from .base import (FREE_OPS, KINDS, LAYER_CLASSES, OpContext, OpCost, ShapeUnknown,  # noqa: F401
                   lookup, register, registered)
