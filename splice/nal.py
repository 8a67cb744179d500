"""Just enough of the H.264 and HEVC bitstreams: NAL units, their types, and where a decoder can
start with nothing before it (an IDR picture).

Packets come in two framings: MP4-style, each NAL unit preceded by its length in `length_size`
bytes (the avcC/hvcC record says how many), and Annex B, each preceded by a start code
(00 00 01 or 00 00 00 01), as MPEG-TS and AVI carry them; length_size 0 means Annex B here.
"""
from __future__ import annotations

NAL_IDR, NAL_SPS, NAL_PPS = 5, 7, 8            # H.264 nal_unit_type
HEVC_IDR = (19, 20)                            # HEVC IDR_W_RADL, IDR_N_LP: nothing after them refers to
                                               # anything before (IDR_W_RADL's leading pictures, shown
                                               # before it, are decodable from it)


def unescape(rbsp: bytes) -> bytes:
    """A NAL unit's payload without its emulation-prevention bytes (00 00 03 -> 00 00)."""
    return rbsp.replace(b"\x00\x00\x03", b"\x00\x00")


def read_ue(data: bytes, bit: int) -> tuple[int, int]:
    """An unsigned Exp-Golomb number read at `bit`; returns it and the position after it."""
    zeros = 0
    while not data[(bit + zeros) // 8] >> (7 - (bit + zeros) % 8) & 1:
        zeros += 1
    bit += zeros + 1
    value = 0
    for _ in range(zeros):
        value = value << 1 | data[bit // 8] >> (7 - bit % 8) & 1
        bit += 1
    return (1 << zeros) - 1 + value, bit


def annexb_units(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte stream (start codes 00 00 01 or 00 00 00 01)."""
    starts, pos = [], data.find(b"\x00\x00\x01")
    while pos >= 0:
        starts.append(pos + 3)
        pos = data.find(b"\x00\x00\x01", pos + 3)
    units = []
    for k, start in enumerate(starts):
        end = starts[k + 1] - 3 if k + 1 < len(starts) else len(data)
        unit = data[start:end].rstrip(b"\x00") if k + 1 < len(starts) else data[start:end]
        if unit:
            units.append(unit)
    return units


def nal_units(data: bytes, length_size: int) -> list[bytes]:
    """The NAL units of a packet: length-prefixed, or Annex B where length_size is 0."""
    if length_size == 0:
        return annexb_units(data)
    units, pos = [], 0
    while pos + length_size < len(data):
        size = int.from_bytes(data[pos:pos + length_size], "big")
        units.append(data[pos + length_size:pos + length_size + size])
        pos += length_size + size
    return [u for u in units if u]


def nal_types(data: bytes, length_size: int) -> list[int]:
    """H.264 nal_unit_type of every NAL unit in a packet."""
    return [unit[0] & 31 for unit in nal_units(data, length_size)]


def length_size(extradata: bytes | None, codec: str = "h264") -> int:
    """The packets' framing from the stream's header: the NAL length size of an avcC (H.264) or
    hvcC (HEVC) record, or 0 (Annex B) where the header is Annex B itself or absent."""
    if not extradata or extradata.startswith(b"\x00\x00\x01") or extradata.startswith(b"\x00\x00\x00\x01"):
        return 0
    at = 21 if codec == "hevc" else 4          # lengthSizeMinusOne's byte in hvcC / avcC
    return (extradata[at] & 3) + 1 if extradata[0] == 1 and len(extradata) > at else 4


def starts_closed(data: bytes, codec: str, framing: int) -> bool | None:
    """Whether this keyframe packet (`framing`: see length_size) is an IDR picture, after which
    nothing is shown that refers to what came before it (an open GOP's recovery point is a
    keyframe too, but its leading pictures are shown before it); None for a codec this module
    does not read."""
    if codec == "h264":
        return NAL_IDR in nal_types(data, framing)
    if codec == "hevc":
        return any(unit[0] >> 1 & 63 in HEVC_IDR for unit in nal_units(data, framing))
    return None
