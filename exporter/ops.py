"""The pg::linear operator that exported modules call for every linear layer (bundle format 3).

The server registers its own kernel under the same schema (server/model/small_linear.cc): for the few rows of a
decode step it reads each weight once for all rows, where CPU BLAS repacks the whole weight per call. Here, in
Python (export, tests, bundle.load_module), it is plain F.linear: the TorchScript compiler only needs the
schema to exist, and Python-side results stay those of torch itself.
"""

import torch
import torch.nn.functional as F

SCHEMA = "linear(Tensor x, Tensor weight, Tensor? bias) -> Tensor"


def _linear(x, weight, bias):
    return F.linear(x, weight, bias)


def _registered() -> bool:
    try:
        torch.ops.pg.linear
        return True
    except (AttributeError, RuntimeError):
        return False


_LIBRARY = None
if not _registered():
    _LIBRARY = torch.library.Library("pg", "DEF")
    _LIBRARY.define(SCHEMA)
    _LIBRARY.impl("linear", _linear, "CompositeExplicitAutograd")
