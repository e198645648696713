"""Reading TensorBoard event files back, as TensorBoard would: TFRecord framing around `Event`
protobufs (tensorboardX ships the message classes; its writer is the one transformers uses here)."""

from __future__ import annotations

import struct
from pathlib import Path


def scalars(path: Path) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] of every scalar in one event file. Each record is: length (u64),
    its masked CRC (u32), the Event bytes, their masked CRC (u32)."""
    from tensorboardX.proto.event_pb2 import Event

    data = path.read_bytes()
    found: dict[str, list[tuple[int, float]]] = {}
    at = 0
    while at < len(data):
        (length,) = struct.unpack_from("<Q", data, at)
        event = Event.FromString(data[at + 12 : at + 12 + length])
        at += 12 + length + 4
        for value in event.summary.value:
            if value.WhichOneof("value") == "simple_value":
                found.setdefault(value.tag, []).append((event.step, value.simple_value))
    assert at == len(data), f"{path} ends inside a record"
    return found
