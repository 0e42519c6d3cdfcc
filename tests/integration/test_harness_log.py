"""The harness's reading of the access log: Gateway.entries() leaves out
the readiness probes' lines, and only those.  A client that later gets a
probe's port from the kernel (the ports cycle; a run of a thousand
connections reuses some) keeps its line.  Synthetic log, no daemon."""

import json

from conftest import Gateway


def test_probe_hides_only_its_own_line(tmp_path, certs, client_ssl):
    gw = Gateway(tmp_path / "gw", certs, client_ssl,
                 routes=[("/echo", "echo")],
                 upstreams={"echo": ["127.0.0.1:9"]})
    # probe A (port 5000) made when the log was empty; probe B (port
    # 6000) after a restart, when it held 5 lines
    gw.probes = [(5000, 0), (6000, 5)]
    ports = [5000,      # A's own line
             7000,
             5000,      # a client that got A's port later
             6000,      # a client that had B's port before B
             8000,
             6000]      # B's own line
    gw.access_log.write_text("".join(
        json.dumps({"client_port": p, "status": 101}) + "\n" for p in ports))
    assert [e["client_port"] for e in gw.entries()] == \
        [7000, 5000, 6000, 8000]
    assert gw.probe_ports == {5000, 6000}
