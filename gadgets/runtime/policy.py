"""What a server allows, decided by its administrator (``sodium-gadgets serve`` options), never
by a client: who may connect, how many at once, how long a silent or a non-reading client is
kept, how much memory scans may take, and whether a client may send its own chain or set
properties that name places on the server.

* **Addresses** (``allow_from``): networks in CIDR form (``10.1.2.3``, ``10.1.2.0/24``,
  ``::1``); the default is the loopback only. Any other peer is closed at accept and logged with
  its address.
* **Connections and sessions**: ``max_connections`` open at once (each costs a thread and a file
  descriptor, nothing more, until it sends its configuration), ``max_sessions`` of them running
  scans; past either a new client gets an ERROR naming the limit.
* **Timeouts**: ``hello_timeout_s`` for a new connection's configuration, ``idle_timeout_s``
  between two messages of a scan, ``send_timeout_s`` for a client that does not read what the
  server sends; each drops the client, logged.
* **Memory** (``max_scan_memory``, ``max_total_memory``): what one scan's steps will hold
  (:meth:`gadgets.runtime.gadget.Gadget.memory_bytes`, from the header, before anything is
  allocated) and all running scans together; a scan that does not fit waits up to
  ``queue_timeout_s`` for others to finish, then is refused with the numbers.
* **Client chains** (``allow_client_chains``, off by default): a chain sent as text (message 2)
  is refused unless it is on, and then its steps are restricted to the application's packages.
* **Locations** (``client_locations``, off by default): a property that names a path or a host
  on the server (:attr:`gadgets.runtime.gadget.Property.location`: an output folder, a PACS, a
  file to read) cannot be set by a client -- not by its chain text, not by its JSON parameters --
  unless it is on.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field

__all__ = ["ServerPolicy", "default_total_memory", "parse_networks"]

GIB = 1 << 30


def default_total_memory() -> int:
    """Three quarters of the machine's physical memory (bytes), or 8 GiB if unknown."""
    try:
        return int(0.75 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 8 * GIB


def parse_networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """``ADDR[,CIDR...]`` as networks; a ValueError names an entry that is not one."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            out.append(ipaddress.ip_network(part, strict=False))
        except ValueError as exc:
            raise ValueError(f"--allow-from: {part!r} is not an address or a network") from exc
    if not out:
        raise ValueError("--allow-from: no address given")
    return tuple(out)


@dataclass(frozen=True)
class ServerPolicy:
    """The administrator's decisions (the module docstring); memory in bytes."""

    allow_from: tuple = field(default_factory=lambda: parse_networks("127.0.0.0/8,::1"))
    max_connections: int = 1000
    max_sessions: int = 8
    hello_timeout_s: float = 10.0
    idle_timeout_s: float = 120.0
    send_timeout_s: float = 30.0
    max_scan_memory: int = 4 * GIB
    max_total_memory: int = field(default_factory=default_total_memory)
    queue_timeout_s: float = 30.0
    allow_client_chains: bool = False
    client_locations: bool = False

    def allows(self, address: str) -> bool:
        """Whether a peer at ``address`` may connect."""
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.allow_from if net.version == ip.version)
