"""TLS 1.3 records a real client's library would not send on its own,
sealed by hand with the client's traffic key (from its key log) after the
upgrade, when wsgate's record layer (src/tls13.c) reads them: alerts,
key updates, unknown content types.  What the user sees: the alert the
client gets, the access log's reason, the close code the backend gets."""

import ssl

import pytest
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import wsproto
from conftest import echo_works
from test_tls_records import RecordClient, frames_in, open_session


def expand_label(secret, label, length):
    info = (length.to_bytes(2, "big") + bytes([6 + len(label)]) +
            b"tls13 " + label + b"\x00" + b"\x01")
    h = hmac.HMAC(secret, hashes.SHA256())
    h.update(info)
    return h.finalize()[:length]


class Sealer:
    """The client's write direction, from its key log."""

    def __init__(self, keylog, seq):
        for line in open(keylog):
            if line.startswith("CLIENT_TRAFFIC_SECRET_0 "):
                self.set(bytes.fromhex(line.split()[2]))
        self.seq = seq

    def set(self, secret):
        self.secret = secret
        self.aead = AESGCM(expand_label(secret, b"key", 16))
        self.iv = expand_label(secret, b"iv", 12)
        self.seq = 0

    def seal(self, content, ctype):
        inner = content + bytes([ctype])
        hdr = b"\x17\x03\x03" + (len(inner) + 16).to_bytes(2, "big")
        nonce = bytes(a ^ b for a, b in
                      zip(self.iv, self.seq.to_bytes(12, "big")))
        self.seq += 1
        return hdr + self.aead.encrypt(nonce, inner, hdr)

    def update(self):
        self.set(expand_label(self.secret, b"traffic upd", 32))


@pytest.fixture
def crafted(echo_gateway, tmp_path):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.keylog_filename = str(tmp_path / "keylog")
    c = RecordClient(echo_gateway.port, ctx)
    open_session(c)
    assert c.tls.cipher()[0] == "TLS_AES_128_GCM_SHA256"
    # The request was the client's one record under its traffic key.
    yield c, Sealer(tmp_path / "keylog", 1)
    c.close()


def echo_after(c, s, payload):
    c.sock.sendall(s.seal(wsproto.encode_frame(wsproto.OP_BINARY, payload,
                                               mask=True), 23))
    got = []

    def have_one(buf):
        got[:] = frames_in(buf)[0]
        return len(got) >= 1
    c.read_until(have_one)
    del c.buf[:]
    return got[0].payload


def ended(gw, c, code=1001):
    (ev,) = gw.backend.wait_event("close", timeout=8)
    assert ev["code"] == code, ev
    return gw.wait_entry(client_port=c.local_port)


def test_key_update_requested_then_data(echo_gateway, crafted):
    """KeyUpdate(update_requested): the client's next records under its
    new key are read, and the client's OpenSSL follows our update."""
    c, s = crafted
    assert echo_after(c, s, b"before") == b"before"
    for i in range(3):
        c.sock.sendall(s.seal(b"\x18\x00\x00\x01\x01", 22))
        s.update()
        assert echo_after(c, s, b"after %d" % i) == b"after %d" % i


def test_key_update_in_pieces(echo_gateway, crafted):
    """A KeyUpdate split over records (RFC 8446 5.1 allows it: the key
    changes where the message ends, at a record's end) is read, at every
    split; a piece followed by another type of record is refused."""
    c, s = crafted
    ku = b"\x18\x00\x00\x01\x00"
    for cut in range(1, 5):
        c.sock.sendall(s.seal(ku[:cut], 22) + s.seal(ku[cut:], 22))
        s.update()
        assert echo_after(c, s, b"cut %d" % cut) == b"cut %d" % cut
    c.sock.sendall(s.seal(ku[:2], 22) + s.seal(wsproto.encode_frame(
        wsproto.OP_TEXT, b"between", mask=True), 23))
    with pytest.raises(ssl.SSLError) as ei:
        c.read_until(lambda b: False)
    assert "UNEXPECTED_MESSAGE" in str(ei.value).upper(), ei.value
    e = ended(echo_gateway, c)
    assert e["reason"] == "client_dropped" and e["frames_in"] == 4, e


def test_close_notify_is_client_dropped(echo_gateway, crafted):
    c, s = crafted
    c.sock.sendall(s.seal(b"\x01\x00", 21))
    e = ended(echo_gateway, c)
    assert e["reason"] == "client_dropped" and e["close_code"] == 1006, e
    assert "client TLS error" not in echo_gateway.error_text()


@pytest.mark.parametrize("desc,name", [(40, "handshake failure"),
                                       (0xfe, "alert number 254")])
def test_fatal_alert_is_client_dropped(echo_gateway, crafted, desc, name):
    """A fatal alert: the error log says which, known or not."""
    c, s = crafted
    c.sock.sendall(s.seal(bytes([2, desc]), 21))
    e = ended(echo_gateway, c)
    assert e["reason"] == "client_dropped" and e["close_code"] == 1006, e
    text = echo_gateway.error_text()
    assert "client TLS error" in text and name in text, text
    assert "(null)" not in text
    echo_works(echo_gateway)


@pytest.mark.parametrize("inner", [b"\x01\x01\x14",      # protected CCS
                                   b"hb\x18",            # heartbeat
                                   b"x\x63",             # unknown type
                                   b"\x0d\x00\x00\x00\x16",  # CertReq
                                   b"\x15",             # empty alert
                                   ])
def test_unexpected_record_ends_with_an_alert(echo_gateway, crafted, inner):
    """Nothing of it reaches the backend: the client gets
    unexpected_message, the backend 1001.  An alert record with no alert
    in it is one (RFC 8446 5.4), not a decode_error."""
    c, s = crafted
    c.sock.sendall(s.seal(inner[:-1], inner[-1]))
    with pytest.raises(ssl.SSLError) as ei:
        c.read_until(lambda b: False)
    assert "UNEXPECTED_MESSAGE" in str(ei.value).upper(), ei.value
    e = ended(echo_gateway, c)
    assert e["reason"] == "client_dropped" and e["frames_in"] == 0, e


def test_unknown_alert_in_the_handshake_is_named(echo_gateway):
    """An alert OpenSSL has no text for, in place of the client's second
    flight: the error log gives its number."""
    gw = echo_gateway
    c = RecordClient(gw.port, gw.ssl)
    try:
        with pytest.raises(ssl.SSLWantReadError):
            c.tls.do_handshake()
        c.sock.sendall(c.out.read() + b"\x15\x03\x03\x00\x02\x02\xfe")
        e = gw.wait_entry(client_port=c.local_port)
    finally:
        c.close()
    assert e["reason"] == "handshake_failed", e
    text = gw.error_text()
    assert "TLS handshake failed: alert number 254" in text, text


def test_close_frame_then_close_notify_in_one_segment(echo_gateway, crafted):
    """The close frame is read before the close_notify behind it: the
    backend gets the client's code, the log says client_closed."""
    c, s = crafted
    c.sock.sendall(s.seal(wsproto.encode_frame(
        wsproto.OP_CLOSE, wsproto.close_payload(4002, b"bye")), 23) +
        s.seal(b"\x01\x00", 21))
    e = ended(echo_gateway, c, code=4002)
    assert e["reason"] == "client_closed" and e["close_code"] == 4002, e


def test_tampered_tag_delivers_nothing(echo_gateway, crafted):
    """A good record, then a frame whose record has one tag bit flipped:
    the first frame is relayed, the second never (no echo of it), and the
    client gets bad_record_mac."""
    c, s = crafted
    good = s.seal(wsproto.encode_frame(wsproto.OP_TEXT, b"good"), 23)
    bad = bytearray(s.seal(wsproto.encode_frame(wsproto.OP_TEXT,
                                                b"forged"), 23))
    bad[-1] ^= 1
    c.sock.sendall(good + bytes(bad))
    with pytest.raises(ssl.SSLError) as ei:
        c.read_until(lambda b: False)
    assert "BAD_RECORD_MAC" in str(ei.value).upper(), ei.value
    e = ended(echo_gateway, c)
    assert e["reason"] == "client_dropped" and e["frames_in"] == 1, e
    assert b"forged" not in c.buf
