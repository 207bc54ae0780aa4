"""JT/T 808 (道路运输车辆卫星定位系统 终端通讯协议) codec, messages and TCP server.

``codec`` frames and headers, ``messages`` bodies (both directions, 2013 and 2019) and the
conversion to :class:`fleet.fix.Fix`, ``server`` the asyncio TCP gateway.
"""

from .codec import (
    FrameError,
    FrameSplitter,
    Header,
    Packet,
    Reassembler,
    decode_frame,
    encode_frame,
    encode_frames,
    phone_to_terminal_id,
)
from .messages import decode_body, decode_packet, encode_body, fixes_from_message

__all__ = [
    "FrameError",
    "FrameSplitter",
    "Header",
    "Packet",
    "Reassembler",
    "decode_body",
    "decode_frame",
    "decode_packet",
    "encode_body",
    "encode_frame",
    "encode_frames",
    "fixes_from_message",
    "phone_to_terminal_id",
]
