"""Fake worker hosts on one machine: a network namespace each, joined to a host-side bridge by a veth pair.

Each host gets its own network stack (it reaches the shared services only at the
bridge's address, never the machine's loopback) and, through `unshare --uts`, its
own hostname, which is what a worker records as its host (`workers.worker_name`).
The Docker socket is a unix socket, so a worker inside a namespace still reaches
the one Docker Engine. Names carry the creating process's pid, so parallel runs do
not collide, and a leftover of a dead process is removed by the next create.
Needs root, iproute2 and util-linux's unshare.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import subprocess

from evaluator.observability.folders import alive

PREFIX = "evn"  # every namespace and link of ours starts so: evn<pid>b (bridge), evn<pid>h<i> (ns, veth)


def available() -> str | None:
    """Return why fake hosts cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    missing = [tool for tool in ("ip", "unshare", "hostname") if shutil.which(tool) is None]
    if missing:
        return f"missing {', '.join(missing)}"
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=check)


class HostNetwork:
    """A bridge at `.1` of a /24 and `hosts` namespaces at `.2`, `.3`, ...; `create()` then `destroy()`."""

    def __init__(self, hosts: int, tag: str | None = None) -> None:
        self.tag = tag or str(os.getpid())
        self.hosts = hosts
        self.bridge = f"{PREFIX}{self.tag}b"
        self.subnet = _free_subnet(int(self.tag) if self.tag.isdigit() else 0)
        self.created: list[str] = []  # namespaces made so far (destroy removes what exists)

    @property
    def host_ip(self) -> str:
        """The host side's address: bind the shared services here."""
        return str(self.subnet.network_address + 1)

    def namespace(self, index: int) -> str:
        return f"{PREFIX}{self.tag}h{index}"

    def address(self, index: int) -> str:
        return str(self.subnet.network_address + 1 + index)

    def create(self) -> HostNetwork:
        sweep_stale()
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.host_ip}/{self.subnet.prefixlen}", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for index in range(1, self.hosts + 1):
                namespace, outside, inside = self.namespace(index), f"{self.namespace(index)}o", "eth0"
                _ip("netns", "add", namespace)
                self.created.append(namespace)
                _ip("link", "add", outside, "type", "veth", "peer", "name", f"{namespace}i")
                _ip("link", "set", f"{namespace}i", "netns", namespace)
                _ip("-n", namespace, "link", "set", f"{namespace}i", "name", inside)
                _ip("link", "set", outside, "master", self.bridge)
                _ip("link", "set", outside, "up")
                _ip("-n", namespace, "addr", "add", f"{self.address(index)}/{self.subnet.prefixlen}", "dev", inside)
                _ip("-n", namespace, "link", "set", inside, "up")
                _ip("-n", namespace, "link", "set", "lo", "up")
        except BaseException:
            self.destroy()
            raise
        return self

    def command(self, index: int, hostname: str, argv: list[str]) -> list[str]:
        """`argv` run in host `index`'s namespace under its own hostname (exec'd: the pid stays the command's)."""
        return ["ip", "netns", "exec", self.namespace(index), "unshare", "--uts", "--",
                "sh", "-c", 'hostname "$0" && exec "$@"', hostname, *argv]

    def destroy(self) -> None:
        """Kill what still runs in our namespaces, delete them (their veth pairs go with them) and the bridge."""
        for index in range(1, self.hosts + 1):
            _remove_namespace(self.namespace(index))
        _ip("link", "del", self.bridge, check=False)


def _remove_namespace(namespace: str) -> None:
    pids = _ip("netns", "pids", namespace, check=False).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    _ip("link", "del", f"{namespace}o", check=False)
    _ip("netns", "del", namespace, check=False)


def sweep_stale() -> None:
    """Remove namespaces and bridges of ours whose creating process is gone (a test killed before teardown)."""
    namespaces = [line.split()[0] for line in _ip("netns", "list", check=False).stdout.splitlines()
                  if line.startswith(PREFIX)]
    links = [name for name in (line.split(":")[1].strip().split("@")[0]
                               for line in _ip("-o", "link", "show", check=False).stdout.splitlines())
             if name.startswith(PREFIX)]
    for name in namespaces + links:
        digits = name[len(PREFIX):]
        digits = digits[:len(digits) - len(digits.lstrip("0123456789"))]
        if not digits or alive(int(digits)):
            continue
        if name in namespaces:
            _remove_namespace(name)
        else:
            _ip("link", "del", name, check=False)


def _free_subnet(seed: int) -> ipaddress.IPv4Network:
    """A /24 in 10.128.0.0/9 that no route of this machine overlaps, picked from `seed` (the pid)."""
    taken = []
    for line in _ip("-4", "route", "show", "table", "all", check=False).stdout.splitlines():
        first = line.split()[0] if line.split() else ""
        if first in ("local", "broadcast", "unreachable", "blackhole", "prohibit") and len(line.split()) > 1:
            first = line.split()[1]
        try:
            taken.append(ipaddress.ip_network(first, strict=False))
        except ValueError:
            continue
    for step in range(4096):
        index = (seed + step * 7919) % 32768
        candidate = ipaddress.ip_network(f"10.{128 + index // 256}.{index % 256}.0/24")
        if not any(candidate.overlaps(route) for route in taken if route.prefixlen > 0):
            return candidate
    raise RuntimeError("no free /24 in 10.128.0.0/9 for the fake hosts' bridge")
