"""Stable 64-bit hashes of row ids, used to partition and cluster rows."""

from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_MULTIPLIER = np.uint64(0x100000001B3)
_LENGTH_SALT = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    # NOTE: uint64 array arithmetic wraps modulo 2**64 without warnings; that is intended.
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@functools.lru_cache(maxsize=8)
def _powers(length: int) -> np.ndarray:
    powers, value, multiplier = [], 1, int(_MULTIPLIER)
    for _ in range(max(length, 1)):
        powers.append(value)
        value = (value * multiplier) & 0xFFFFFFFFFFFFFFFF
    return np.array(powers, dtype=np.uint64)


def _hash_binary(array: pa.Array) -> np.ndarray:
    """Hash variable-length strings with a vectorized polynomial over their bytes."""
    large = pa.types.is_large_string(array.type) or pa.types.is_large_binary(array.type)
    offset_type = np.int64 if large else np.int32
    buffers = array.buffers()
    offsets = np.frombuffer(buffers[1], dtype=offset_type)[array.offset : array.offset + len(array) + 1]
    offsets = offsets.astype(np.int64)
    lengths = np.diff(offsets)
    data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else np.zeros(0, np.uint8)
    data = data[offsets[0] : offsets[-1]]
    starts = offsets[:-1] - offsets[0]
    position = np.arange(len(data), dtype=np.int64) - np.repeat(starts, lengths)
    contributions = ((data.astype(np.uint64) + np.uint64(1))
                     * _powers(1 << int(lengths.max(initial=1)).bit_length())[position])
    cumulative = np.concatenate([np.zeros(1, np.uint64), np.cumsum(contributions, dtype=np.uint64)])
    sums = cumulative[starts + lengths] - cumulative[starts]
    return _splitmix64(sums ^ (lengths.astype(np.uint64) * _LENGTH_SALT))


def hash_row_ids(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Return a uint64 hash per row id; equal ids always hash equally."""
    if isinstance(array, pa.ChunkedArray):
        parts = [hash_row_ids(chunk) for chunk in array.chunks]
        return np.concatenate(parts) if parts else np.zeros(0, np.uint64)
    if pa.types.is_integer(array.type):
        values = array.cast(pa.int64()).to_numpy(zero_copy_only=False)
        return _splitmix64(values.astype(np.int64).view(np.uint64))
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        array = pc.cast(array, pa.large_string())
    return _hash_binary(array)
