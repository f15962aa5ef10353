"""Reading and writing safetensors files with numpy only (Debian has no python3-safetensors).

The format: an 8-byte little-endian header length, a JSON header mapping each tensor name to its
dtype, shape and [begin, end) byte offsets into the data that follows, then the data. Floats are
returned as float32 arrays (bf16 and f16 widened exactly), integers as int64.
"""
import json
import os
import struct

import numpy as np

_INT_DTYPES = {"I64": np.int64, "I32": np.int32, "U8": np.uint8}
_ELEM_BYTES = {"BF16": 2, "F16": 2, "F32": 4, "I64": 8, "I32": 4, "U8": 1}


class CheckpointError(Exception):
    """A checkpoint that cannot be read: the message names the file and what is wrong."""


def read_header(path):
    """Returns (header dict without __metadata__, metadata dict, data offset)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) != 8:
                raise CheckpointError(f"{path}: not a safetensors file (shorter than 8 bytes)")
            (n,) = struct.unpack("<Q", raw)
            size = os.fstat(f.fileno()).st_size
            if n > size - 8:
                raise CheckpointError(f"{path}: header length {n} exceeds the file")
            header = json.loads(f.read(n))
    except OSError as e:
        raise CheckpointError(f"{path}: {e.strerror}") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: header is not JSON ({e})") from e
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: header is not a JSON object")
    meta = header.pop("__metadata__", {}) or {}
    base = 8 + n
    for name, t in header.items():
        if t.get("dtype") not in _ELEM_BYTES:
            raise CheckpointError(f"{path}: tensor '{name}': unsupported dtype {t.get('dtype')}")
        begin, end = t["data_offsets"]
        numel = int(np.prod(t["shape"])) if t["shape"] else 1
        if end - begin != numel * _ELEM_BYTES[t["dtype"]] or base + end > size:
            raise CheckpointError(f"{path}: tensor '{name}': data offsets do not match its shape")
    return header, meta, base


def read(path, names=None):
    """Reads tensors of one file: {name: np.ndarray} (floats as float32). `names`: only these."""
    header, meta, base = read_header(path)
    if meta.get("specula_quant"):
        raise CheckpointError(f"{path}: quantized checkpoints are not supported here; "
                              "give the bf16/f16/f32 checkpoint it was made from")
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    out = {}
    for name, t in header.items():
        if names is not None and name not in names:
            continue
        begin, end = t["data_offsets"]
        raw = mm[base + begin:base + end]
        dt = t["dtype"]
        if dt == "BF16":
            a = (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif dt == "F16":
            a = raw.view(np.float16).astype(np.float32)
        elif dt == "F32":
            a = np.array(raw.view(np.float32))
        else:
            a = raw.view(_INT_DTYPES[dt]).astype(np.int64)
        out[name] = a.reshape(t["shape"])
    return out


def read_dir(directory):
    """All tensors of a checkpoint directory (model.safetensors, or shards with an index)."""
    index = os.path.join(directory, "model.safetensors.index.json")
    single = os.path.join(directory, "model.safetensors")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
        out = {}
        for fn in files:
            out.update(read(os.path.join(directory, fn)))
        return out
    if os.path.exists(single):
        return read(single)
    raise CheckpointError(f"{directory}: no model.safetensors or model.safetensors.index.json")


def f32_to_bf16_bits(a):
    """Round-to-nearest-even float32 -> bf16 bit patterns (uint16). NaN stays NaN."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    nan = np.isnan(a)
    return np.where(nan, (u >> 16) | 0x40, rounded).astype(np.uint16)


def round_to(a, dtype):
    """The float32 values `a` becomes when stored as `dtype` (BF16, F16, F32) and read back."""
    a = np.asarray(a, dtype=np.float32)
    if dtype == "BF16":
        return (f32_to_bf16_bits(a).astype(np.uint32) << 16).view(np.float32)
    if dtype == "F16":
        return a.astype(np.float16).astype(np.float32)
    return a


def write(path, tensors, metadata=None):
    """Writes {name: (np.ndarray, dtype)} with dtype BF16, F16, F32 or I64, in name order."""
    header = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        arr, dt = tensors[name]
        arr = np.asarray(arr)
        if dt == "BF16":
            data = f32_to_bf16_bits(arr.astype(np.float32)).tobytes()
        elif dt == "F16":
            data = arr.astype(np.float16).tobytes()
        elif dt == "F32":
            data = arr.astype(np.float32).tobytes()
        elif dt == "I64":
            data = arr.astype(np.int64).tobytes()
        else:
            raise ValueError(f"unsupported dtype {dt}")
        header[name] = {"dtype": dt, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = dict(metadata or {"format": "pt"})
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * ((8 - len(head) % 8) % 8)  # data aligned to 8 bytes
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)
