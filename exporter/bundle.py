"""Loading an exported bundle's modules in Python (tests, tools), as the C++ engine does.

Bundle format 2 keeps each module's weights in <module>.safetensors next to its TorchScript code (<module>.pt),
whose parameters are one-element, zero-stride placeholders of the right shape and dtype; format 1 bundles hold
the weights inside the .pt archive and load as they are.
"""

import os

import torch

from . import ops  # noqa: F401  (archives of format 3 call torch.ops.pg.linear)
from .errors import ExportError
from .safetensors_io import SafetensorsFile


def load_module(bundle_dir: str, name: str):
    """torch.jit.load(bundle_dir/name.pt) with its weights from name.safetensors when that file exists.
    The tensors are copies (the mapping is closed before returning), each checked against its placeholder."""
    module = torch.jit.load(os.path.join(bundle_dir, name + ".pt"))
    path = os.path.join(bundle_dir, name + ".safetensors")
    if not os.path.exists(path):
        return module
    weights = SafetensorsFile(path)
    try:
        expected = dict(module.named_parameters())
        for pname, placeholder in expected.items():
            if pname not in weights.entries:
                raise ExportError(f"{path} lacks tensor {pname}")
            t = weights.get(pname)
            if t.dtype != placeholder.dtype or tuple(t.shape) != tuple(placeholder.shape):
                raise ExportError(f"{path}: tensor {pname} is {t.dtype} {list(t.shape)}, the module expects "
                                  f"{placeholder.dtype} {list(placeholder.shape)}")
            owner = module
            *path_parts, leaf = pname.split(".")
            for part in path_parts:
                owner = getattr(owner, part)
            setattr(owner, leaf, torch.nn.Parameter(t.clone(), requires_grad=False))
    finally:
        weights.close()
    return module
