"""Raw-socket upstreams run in threads of the test process.

A RawUpstream accepts connections and runs a behaviour on each; every byte
received is recorded on the connection.  Behaviours cover a correct but
fully-recorded WebSocket echo server and deliberately broken servers.
All loops are bounded by a deadline and by the upstream's stop event.
"""

import socket
import struct
import threading
import time

import wsproto

POLL = 0.2


class UpConn:
    def __init__(self, up, sock):
        self.up = up
        self.sock = sock
        self.data = bytearray()      # every byte ever received
        self.buf = bytearray()       # not yet consumed
        self.head = None
        self.request_line = None
        self.headers = []            # [(name, value)] as received
        self.frames = []             # decoded frames received
        self.eof = False
        self.done = threading.Event()
        self.error = None
        self.sent = 0

    # -- reading ----------------------------------------------------------

    def recv(self, deadline):
        """Read once. Returns False on EOF/stop/deadline."""
        while not self.up.stopping.is_set():
            if time.monotonic() > deadline:
                return False
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                self.eof = True
                return False
            if not chunk:
                self.eof = True
                return False
            self.data += chunk
            self.buf += chunk
            return True
        return False

    def read_head(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > 65536 or not self.recv(deadline):
                return False
        i = self.buf.index(b"\r\n\r\n")
        self.head = bytes(self.buf[:i])
        del self.buf[:i + 4]
        lines = self.head.decode("latin-1").split("\r\n")
        self.request_line = lines[0]
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.headers.append((k.strip(), v.strip()))
        return True

    def header(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def path(self):
        return self.request_line.split(" ")[1] if self.request_line else None

    def read_frame(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            f, n = wsproto.decode_frame(self.buf, max_len=64 << 20)
            if f is not None:
                del self.buf[:n]
                self.frames.append(f)
                return f
            if not self.recv(deadline):
                return None

    def drain(self, timeout=10.0):
        """Record everything until EOF, stop or timeout."""
        deadline = time.monotonic() + timeout
        while self.recv(deadline):
            pass

    # -- writing ----------------------------------------------------------

    def send(self, data):
        self.sock.sendall(data)

    def send_counted(self, data, timeout=60.0):
        """Send data as fast as the socket takes it, self.sent counting
        what the kernel accepted (how far a slow reader let it get).
        False on a stop, an error or the timeout before the end."""
        view = memoryview(data)
        self.sent = 0
        deadline = time.monotonic() + timeout
        while self.sent < len(view):
            if time.monotonic() > deadline or self.up.stopping.is_set():
                return False
            try:
                self.sent += self.sock.send(view[self.sent:])
            except socket.timeout:
                continue
            except OSError:
                return False
        return True

    def accept_101(self, protocol=None, extra=b"", after=b""):
        """Send a correct 101 (extra: more header lines), and after it,
        in the same write, the bytes after."""
        key = (self.header("Sec-WebSocket-Key") or [""])[0]
        resp = (b"HTTP/1.1 101 Switching Protocols\r\n"
                b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + wsproto.accept_for(key).encode() +
                b"\r\n")
        if protocol:
            resp += b"Sec-WebSocket-Protocol: " + protocol.encode() + b"\r\n"
        self.send(resp + extra + b"\r\n" + after)

    def close_frames(self):
        return [f for f in self.frames if f.opcode == wsproto.OP_CLOSE]

    def payloads(self):
        return b"".join(f.payload for f in self.frames)


class RawUpstream:
    def __init__(self, behavior=None, port=0, host="127.0.0.1"):
        self.host = host
        self.behavior = behavior or ws_echo
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.conns = []
        self.threads = []
        self.lsock = socket.socket(socket.AF_INET6 if ":" in host else
                                   socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((host, port))
        self.lsock.listen(64)
        self.lsock.settimeout(POLL)
        self.port = self.lsock.getsockname()[1]
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        self.accept_thread = t

    @property
    def addr(self):
        return ("[%s]:%d" if ":" in self.host else "%s:%d") % (self.host,
                                                               self.port)

    def _accept_loop(self):
        while not self.stopping.is_set():
            try:
                s, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            s.settimeout(POLL)
            c = UpConn(self, s)
            with self.lock:
                self.conns.append(c)
            t = threading.Thread(target=self._run, args=(c,), daemon=True)
            t.start()
            self.threads.append(t)

    def _run(self, c):
        try:
            self.behavior(c)
        except Exception as e:      # recorded, shown by tests on failure
            c.error = e
        finally:
            try:
                c.sock.close()
            except OSError:
                pass
            c.done.set()

    def clear(self):
        with self.lock:
            self.conns = []

    def connections(self):
        with self.lock:
            return list(self.conns)

    def all_bytes(self):
        return b"".join(bytes(c.data) for c in self.connections())

    def wait_conns(self, n, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            cs = self.connections()
            if len(cs) >= n:
                return cs
            time.sleep(0.02)
        raise AssertionError("upstream got %d connections, wanted %d" %
                             (len(self.connections()), n))

    def close(self):
        self.stopping.set()
        try:
            self.lsock.close()
        except OSError:
            pass
        for c in self.connections():
            try:
                c.sock.close()
            except OSError:
                pass
        self.accept_thread.join(2)
        for t in self.threads:
            t.join(2)


# -- behaviours --------------------------------------------------------------

def ws_echo(c, delay=0.0, lifetime=60.0):
    """A correct WebSocket echo server that records everything.

    Echoes data frames one for one (so fragmentation is preserved), answers
    pings with pongs, answers a close with the same close.  Picks the first
    offered subprotocol.
    """
    if not c.read_head():
        return
    if delay:
        time.sleep(delay)
    offered = ",".join(c.header("Sec-WebSocket-Protocol"))
    proto = offered.split(",")[0].strip() if offered else None
    c.accept_101(proto)
    ws_echo_frames(c, lifetime)


def ws_echo_frames(c, lifetime=60.0, reply=None):
    """The frame loop of ws_echo, after the 101.  With reply, each data
    frame and its index among them go to reply(c, n, frame) instead of
    being echoed."""
    n = 0
    deadline = time.monotonic() + lifetime
    while time.monotonic() < deadline:
        f = c.read_frame(max(0.01, deadline - time.monotonic()))
        if f is None:
            return
        if f.opcode == wsproto.OP_PING:
            c.send(wsproto.encode_frame(wsproto.OP_PONG, f.payload,
                                        mask=False))
        elif f.opcode == wsproto.OP_CLOSE:
            c.send(wsproto.encode_frame(wsproto.OP_CLOSE, f.payload,
                                        mask=False))
            c.drain(2.0)
            return
        elif f.opcode in (wsproto.OP_TEXT, wsproto.OP_BINARY,
                          wsproto.OP_CONT) and reply is not None:
            reply(c, n, f)
            n += 1
        elif f.opcode in (wsproto.OP_TEXT, wsproto.OP_BINARY,
                          wsproto.OP_CONT):
            c.send(wsproto.encode_frame(f.opcode, f.payload, fin=f.fin,
                                        mask=False))


def silent(c):
    """Accept the TCP connection, record, never answer."""
    c.drain(30.0)


def hang_up(reset=False):
    """Read the request head, then close without a byte of answer, as a
    server going down would; reset: with a TCP RST, not a FIN."""
    def behavior(c):
        if not c.read_head():
            return
        if reset:
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                              struct.pack("ii", 1, 0))
    return behavior


def respond(raw):
    """Read the request head, answer with these exact bytes, keep reading."""
    def behavior(c):
        if not c.read_head():
            return
        c.send(raw)
        c.drain(10.0)
    return behavior


def ws_then(after, then="read", delay=0.3):
    """Complete a correct 101, then send raw bytes.

    then: "read" keeps reading (recording) until EOF; "drop" closes the
    TCP connection without a close frame.  delay=None sends the bytes in
    the 101's own write (one segment on loopback).
    """
    def behavior(c):
        if not c.read_head():
            return
        if delay is None:
            c.accept_101(after=after)
        else:
            c.accept_101()
            if delay:
                time.sleep(delay)
            if after:
                c.send(after)
        if then == "drop":
            return
        deadline = time.monotonic() + 10.0
        while c.read_frame(max(0.01, deadline - time.monotonic())):
            pass
    return behavior


def flood(total=400 << 20, seconds=15.0, chunk=1 << 20, sndbuf=None):
    """After a correct 101, send unmasked 1 MiB binary frames as fast as the
    socket takes them.  c.sent counts bytes the kernel accepted."""
    def behavior(c):
        if sndbuf:
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        if not c.read_head():
            return
        c.accept_101()
        frame = wsproto.encode_frame(wsproto.OP_BINARY, b"\x00" * chunk,
                                     mask=False)
        deadline = time.monotonic() + seconds
        view = memoryview(frame)
        off = 0
        while c.sent < total and time.monotonic() < deadline and \
                not c.up.stopping.is_set():
            try:
                n = c.sock.send(view[off:])
            except socket.timeout:
                continue
            except OSError:
                return
            c.sent += n
            off = (off + n) % len(frame)
    return behavior


def deaf(seconds=20.0):
    """Complete a correct 101, then never read (until stopped)."""
    def behavior(c):
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        if not c.read_head():
            return
        c.accept_101()
        c.up.stopping.wait(seconds)
    return behavior
