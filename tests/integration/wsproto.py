"""Tiny RFC 6455 frame codec for the raw-socket tests.

Deliberately able to build invalid frames (unmasked client frames, reserved
bits and opcodes, non-minimal lengths, oversized control frames) so tests
can feed the gateway exactly the bytes they mean.
"""

import base64
import hashlib
import os
import struct

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA


def new_key():
    return base64.b64encode(os.urandom(16)).decode()


def accept_for(key):
    if isinstance(key, str):
        key = key.encode()
    return base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()


def mask_bytes(payload, key):
    if key == b"\0\0\0\0":
        return bytes(payload)
    return bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def encode_frame(opcode, payload=b"", fin=True, rsv=0, mask=True,
                 mask_key=None, length_form=None, declared_len=None):
    """Build one frame.

    length_form: None (shortest), 7, 16 or 64 to force an encoding.
    declared_len: length written in the header (default len(payload)); lets
    a test announce a big frame and send only a few bytes of it.
    """
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload) if declared_len is None else declared_len
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0xF)
    mbit = 0x80 if mask else 0
    if length_form is None:
        length_form = 7 if n < 126 else (16 if n < 65536 else 64)
    if length_form == 7:
        hdr = struct.pack("!BB", b0, mbit | n)
    elif length_form == 16:
        hdr = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, mbit | 127, n)
    if mask:
        key = mask_key if mask_key is not None else os.urandom(4)
        return hdr + key + mask_bytes(payload, key)
    return hdr + payload


def close_payload(code=None, reason=b""):
    if code is None:
        return b""
    if isinstance(reason, str):
        reason = reason.encode()
    return struct.pack("!H", code) + reason


def parse_close(payload):
    if len(payload) < 2:
        return None, b""
    return struct.unpack("!H", payload[:2])[0], payload[2:]


class Frame:
    __slots__ = ("fin", "rsv", "opcode", "masked", "payload")

    def __init__(self, fin, rsv, opcode, masked, payload):
        self.fin = fin
        self.rsv = rsv
        self.opcode = opcode
        self.masked = masked
        self.payload = payload

    def __repr__(self):
        p = self.payload if len(self.payload) <= 40 else \
            self.payload[:40] + b"...(%d)" % len(self.payload)
        return "Frame(fin=%d rsv=%d op=%#x masked=%d %r)" % (
            self.fin, self.rsv, self.opcode, self.masked, p)

    @property
    def close_code(self):
        return parse_close(self.payload)[0]

    @property
    def close_reason(self):
        return parse_close(self.payload)[1]


def decode_frame(buf, max_len=1 << 31):
    """Decode one frame from the start of buf.

    Returns (Frame, consumed) or (None, 0) when more bytes are needed.
    The payload is unmasked.
    """
    if len(buf) < 2:
        return None, 0
    b0, b1 = buf[0], buf[1]
    fin = bool(b0 & 0x80)
    rsv = (b0 >> 4) & 7
    opcode = b0 & 0xF
    masked = bool(b1 & 0x80)
    n = b1 & 0x7F
    pos = 2
    if n == 126:
        if len(buf) < 4:
            return None, 0
        n = struct.unpack("!H", bytes(buf[2:4]))[0]
        pos = 4
    elif n == 127:
        if len(buf) < 10:
            return None, 0
        n = struct.unpack("!Q", bytes(buf[2:10]))[0]
        pos = 10
    if n > max_len:
        raise ValueError("frame length %d over test limit" % n)
    key = None
    if masked:
        if len(buf) < pos + 4:
            return None, 0
        key = bytes(buf[pos:pos + 4])
        pos += 4
    if len(buf) < pos + n:
        return None, 0
    payload = bytes(buf[pos:pos + n])
    if masked:
        payload = mask_bytes(payload, key)
    return Frame(fin, rsv, opcode, masked, payload), pos + n
