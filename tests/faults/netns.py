"""Hosts on one machine: network namespaces on a bridge, each with an address of 10.231.<n>.0/24.

The bridge lives in the test's own namespace with the address ``.254``, so
the test reaches every host as a client on the same network would. Each host
is joined by a veth pair; ``cut(host)`` downs the bridge's end of it (the
cable pulled at the switch: the host keeps its address and its processes,
and its packets go nowhere), ``restore(host)`` plugs it back.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

import pytest


class NoNamespaces(RuntimeError):
    """Raised when this process may not create network namespaces."""


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def _used_subnets() -> set[int]:
    out = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True).stdout
    return {int(word.split(".")[2]) for word in out.split() if word.startswith("10.231.")}


@dataclass
class Host:
    """One namespace: its name, its address and the bridge's end of its cable."""

    name: str
    netns: str
    address: str
    cable: str

    def command(self, *argv: str) -> list[str]:
        """``argv`` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.netns, *argv]


class Network:
    """A bridge and the hosts on it; ``close()`` removes every namespace and link it made."""

    def __init__(self):
        free = sorted(set(range(100, 250)) - _used_subnets())
        self.subnet = free[os.getpid() % len(free)]
        self.tag = f"i{self.subnet}"  # interface names are at most 15 characters
        self.bridge = f"{self.tag}br"
        self.hosts: list[Host] = []
        self.gateway = f"10.231.{self.subnet}.254"
        try:
            _ip("netns", "add", f"imgproc-{self.tag}-probe")
        except (RuntimeError, FileNotFoundError) as exc:
            raise NoNamespaces(str(exc)) from None
        _ip("netns", "del", f"imgproc-{self.tag}-probe")
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def add_host(self, name: str) -> Host:
        index = len(self.hosts) + 1
        host = Host(
            name, f"imgproc-{self.tag}-{name}", f"10.231.{self.subnet}.{index}", f"{self.tag}h{index}"
        )
        self.hosts.append(host)
        inside = f"{self.tag}n{index}"
        _ip("netns", "add", host.netns)
        _ip("link", "add", host.cable, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", host.netns)
        _ip("link", "set", host.cable, "master", self.bridge, "up")
        _ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", inside)
        _ip("-n", host.netns, "link", "set", inside, "up")
        _ip("-n", host.netns, "link", "set", "lo", "up")
        return host

    def cut(self, host: Host) -> None:
        _ip("link", "set", host.cable, "down")

    def restore(self, host: Host) -> None:
        _ip("link", "set", host.cable, "up")

    def close(self) -> None:
        for host in self.hosts:
            # A namespace's veth may outlive it while the kernel tears it down: delete the pair first.
            subprocess.run(["ip", "link", "del", host.cable], capture_output=True)
            subprocess.run(["ip", "netns", "del", host.netns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)


@pytest.fixture
def network():
    """A fresh ``Network``; skipped (failed under CI) where namespaces cannot be made."""
    try:
        net = Network()
    except NoNamespaces as exc:
        message = f"cannot create network namespaces (needs root or CAP_SYS_ADMIN): {exc}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield net
    finally:
        net.close()
