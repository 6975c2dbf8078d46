"""A pure-Python safetensors reader (mmap, tensor by tensor) and a streaming writer (bundles, --make-random, tests).

Format: 8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets}} (plus an
optional "__metadata__"), then the raw little-endian tensor bytes. Tensors are read lazily from a private
(copy-on-write) mmap, so a checkpoint is never held twice in memory: the caller converts one tensor at a time.
"""

import json
import mmap
import os
import struct

import torch

from .errors import ExportError

# safetensors dtype -> (torch dtype used to read the raw bytes, dtype it is viewed as, bytes per element)
_DTYPES = {
    "BF16": (torch.int16, torch.bfloat16, 2),
    "F16": (torch.float16, torch.float16, 2),
    "F32": (torch.float32, torch.float32, 4),
    "F64": (torch.float64, torch.float64, 8),
    "I64": (torch.int64, torch.int64, 8),
    "I32": (torch.int32, torch.int32, 4),
    "I16": (torch.int16, torch.int16, 2),
    "I8": (torch.int8, torch.int8, 1),
    "U8": (torch.uint8, torch.uint8, 1),
    "BOOL": (torch.bool, torch.bool, 1),
}
_NAMES = {view: name for name, (_, view, _) in _DTYPES.items()}


class SafetensorsFile:
    """One .safetensors file, opened with mmap; `get(name)` returns a tensor viewing the mapped bytes."""

    def __init__(self, path):
        self.path = path
        try:
            self._file = open(path, "rb")
        except OSError as e:
            raise ExportError(f"cannot open {path}: {e.strerror}")
        try:
            head = self._file.read(8)
            if len(head) != 8:
                raise ExportError(f"{path} is not a safetensors file (too short)")
            (n,) = struct.unpack("<Q", head)
            size = os.fstat(self._file.fileno()).st_size
            if n > size - 8 or n > 100_000_000:
                raise ExportError(f"{path} is not a safetensors file (bad header length {n})")
            try:
                header = json.loads(self._file.read(n).decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise ExportError(f"{path} has a corrupt safetensors header: {e}")
            if not isinstance(header, dict):
                raise ExportError(f"{path} has a corrupt safetensors header")
            header.pop("__metadata__", None)
            self.entries = header
            self._data_start = 8 + n
            self._size = size
            # ACCESS_COPY: a private mapping, so torch.frombuffer gets a writable buffer without copying
            # (pages are only copied if written, which we never do).
            self._mm = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_COPY) if size > 0 else None
        except Exception:
            self._file.close()
            raise

    def keys(self):
        return list(self.entries.keys())

    def info(self, name):
        e = self.entries[name]
        return e["dtype"], list(e["shape"])

    def get(self, name):
        """The tensor `name` (a view of the mapped file; copy or convert it before close())."""
        e = self.entries[name]
        dtype = e.get("dtype")
        if dtype not in _DTYPES:
            raise ExportError(f"tensor {name} in {self.path} has unsupported dtype {dtype}")
        read_as, view_as, width = _DTYPES[dtype]
        shape = [int(s) for s in e["shape"]]
        begin, end = (int(x) for x in e["data_offsets"])
        count = 1
        for s in shape:
            count *= s
        if end - begin != count * width or self._data_start + end > self._size:
            raise ExportError(f"tensor {name} in {self.path} has inconsistent data offsets")
        if count == 0:
            return torch.empty(shape, dtype=view_as)
        t = torch.frombuffer(self._mm, dtype=read_as, count=count, offset=self._data_start + begin)
        if read_as != view_as:
            t = t.view(view_as)
        return t.view(shape)

    def release(self):
        """Hint the kernel that mapped pages read so far may be dropped (keeps peak RSS near one copy)."""
        if self._mm is not None and hasattr(self._mm, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
            try:
                self._mm.madvise(mmap.MADV_DONTNEED)
            except (OSError, ValueError):
                pass

    def close(self):
        if self._mm is not None:
            try:
                self._mm.close()
            except BufferError:
                pass  # a tensor still views it; the mapping goes away with that tensor
            self._mm = None
        self._file.close()


def save_file(tensors, path, metadata=None):
    """Write {name: tensor} as a .safetensors file (used by tests to make single-file / fp16 variants)."""
    specs = [(name, tensors[name].dtype, tuple(tensors[name].shape)) for name in sorted(tensors)]
    write_streaming(specs, path, lambda name: tensors[name], align=8, metadata=metadata)


def write_streaming(specs, path, fetch, after_each=None, align=64, metadata=None):
    """Write [(name, dtype, shape)] as .safetensors, one tensor at a time: the header comes from the specs, then
    each tensor's bytes from fetch(name) (a tensor of that dtype and shape), so the set is never held in memory
    at once. The header (with `metadata` as "__metadata__" if given) is padded with spaces so the data starts on
    an `align`-byte boundary of the file (the engine maps bundle weights and uses the bytes in place); tensors
    follow in the given order, without holes."""
    header = {}
    offset = 0
    for name, dtype, shape in specs:
        if dtype not in _NAMES:
            raise ValueError(f"unsupported dtype {dtype}")
        n = _DTYPES[_NAMES[dtype]][2]
        for d in shape:
            n *= d
        header[name] = {"dtype": _NAMES[dtype], "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    if metadata:
        header["__metadata__"] = metadata
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * ((align - (8 + len(hb)) % align) % align)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for name, dtype, shape in specs:
            t = fetch(name).detach().contiguous().cpu()
            if t.dtype != dtype or tuple(t.shape) != tuple(shape):
                raise ValueError(f"tensor {name} came as {t.dtype} {list(t.shape)}")
            raw = t.view(torch.int16) if t.dtype == torch.bfloat16 else t
            if raw.numel():
                f.write(memoryview(raw.numpy()).cast("B"))
            del t, raw
            if after_each is not None:
                after_each()
