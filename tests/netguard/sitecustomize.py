"""Loaded by every Python process (workers too) started with this folder on PYTHONPATH: any attempt to
reach the network is written to $PARITY_NETWORK_LOG and refused."""
import os
import socket

_LOG = os.environ.get("PARITY_NETWORK_LOG")


def _refuse(what, *args, **kwargs):
    with open(_LOG, "a") as handle:
        handle.write(f"{os.getpid()} {what} {args[:2]!r}\n")
    raise OSError(f"network access refused by the test guard: {what}")


if _LOG:
    _connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex

    def _guarded_connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            _refuse("connect", address)
        return _connect(self, address)  # local sockets: multiprocessing's own pipes

    def _guarded_connect_ex(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            _refuse("connect_ex", address)
        return _connect_ex(self, address)

    socket.socket.connect = _guarded_connect
    socket.socket.connect_ex = _guarded_connect_ex
    socket.getaddrinfo = lambda *a, **k: _refuse("getaddrinfo", *a)
    socket.gethostbyname = lambda *a, **k: _refuse("gethostbyname", *a)
