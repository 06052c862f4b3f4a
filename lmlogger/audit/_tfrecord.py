"""A fast, selective reader of TensorBoard event files.

Event files are TFRecord streams: ``uint64 length, uint32 crc(length), data, uint32 crc(data)``,
each ``data`` a serialized ``Event``. The audit needs a handful of scalars (the epoch values and
their steps) out of runs that can hold millions of points, so it walks the frames without
decoding them, reads each event's ``step`` straight from the first bytes, and decodes with
tensorboard's own protobuf classes only the events at a wanted step.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Iterator

_HEADER = struct.Struct("<Q")


def _varint(buf: bytes | mmap.mmap, pos: int) -> tuple[int, int]:
    result = shift = 0
    while shift < 70:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
    raise IndexError("varint longer than 10 bytes")


def _step_of(buf: mmap.mmap, start: int, end: int) -> int | None:
    """The ``step`` field of an Event whose bytes are ``buf[start:end]``, without decoding it."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if field == 2 and wire == 0:
            return _varint(buf, pos)[0]
        if wire == 0:
            _, pos = _varint(buf, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:  # length-delimited (summary, file_version, ...) come after step in practice
            return 0 if field != 2 else None
    return 0  # proto3 default: step 0 is not written


def frames(path: str, steps: set[int] | None = None) -> Iterator[bytes]:
    """Serialized events of ``path`` (only those at ``steps`` when given). A truncated tail is ignored.

    Raises:
        AuditInputError: ``path`` is not a regular file, or a frame's bytes are not an event.
    """
    from lmlogger.audit._sidecar import AuditInputError, open_regular

    with open_regular(path, "TensorBoard event file") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            return
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            pos = 0
            while pos + 12 <= size:
                (length,) = _HEADER.unpack_from(buf, pos)
                start = pos + 12
                end = start + length
                if end + 4 > size:
                    break  # the writer was killed mid-record
                try:
                    step = _step_of(buf, start, end) if steps is not None else None
                except IndexError:
                    raise AuditInputError(
                        f"{path}: corrupt TensorBoard event file (the frame at byte {pos} is not an event)"
                    ) from None
                if steps is None or step in steps:
                    yield bytes(buf[start:end])
                pos = end + 4


def read_scalars(paths: list[str], tags: set[str], steps: set[int] | None) -> dict[str, dict[int, list[float]]]:
    """``{tag: {step: [values]}}`` for scalar ``tags`` at ``steps`` (all steps when ``None``), decoded with
    tensorboard's own protobuf classes."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.util import tensor_util

    from lmlogger.audit._sidecar import AuditInputError

    out: dict[str, dict[int, list[float]]] = {t: {} for t in tags}
    for path in paths:
        for data in frames(path, steps):
            try:
                event = Event.FromString(data)
                if not event.HasField("summary"):
                    continue
                for value in event.summary.value:
                    if value.tag not in out:
                        continue
                    if value.HasField("simple_value"):
                        number = float(value.simple_value)
                    elif value.HasField("tensor"):
                        number = float(tensor_util.make_ndarray(value.tensor).reshape(-1)[0])
                    else:
                        continue
                    out[value.tag].setdefault(event.step, []).append(number)
            except Exception as err:  # protobuf's DecodeError, numpy's errors on a malformed tensor
                raise AuditInputError(
                    f"{path}: corrupt TensorBoard event file (an event at step {_safe_step(data)} does not decode: "
                    f"{type(err).__name__})"
                ) from None
    return out


def _safe_step(data: bytes) -> str:
    try:
        step = _step_of(data, 0, len(data))  # type: ignore[arg-type]
    except IndexError:
        return "?"
    return "?" if step is None else str(step)
