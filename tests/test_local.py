"""Local runs keep Beam's gRPC servers off the network."""

from concurrent import futures
from pathlib import Path

import grpc
import pytest

from pipeline.local import bind_grpc_servers_to_loopback

PROC_TCP = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))

# 127.0.0.1 as /proc/net/tcp lists it, and as an IPv4-mapped IPv6 address in tcp6.
LOOPBACK_ADDRESSES = {"0100007F", "0000000000000000FFFF00000100007F"}


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as the kernel lists them) of sockets listening on `port`."""
    found = set()
    for table in PROC_TCP:
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if int(hex_port, 16) == port and state == "0A":
                found.add(address)
    return found


@pytest.mark.skipif(not PROC_TCP[0].exists(), reason="needs Linux /proc/net/tcp")
def test_all_interfaces_address_becomes_loopback():
    bind_grpc_servers_to_loopback()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    port = server.add_insecure_port("[::]:0")
    server.start()
    try:
        addresses = listening_addresses(port)
        assert addresses
        assert addresses <= LOOPBACK_ADDRESSES
    finally:
        server.stop(None)


def test_patch_is_applied_once():
    bind_grpc_servers_to_loopback()
    patched = grpc.server
    bind_grpc_servers_to_loopback()
    assert grpc.server is patched
