"""Pure address classification for the SSRF guard (no Scrapy, no reactor).

Two questions, answered the way the operating system's resolver would:

* ``parse_ip_literal(host)``: is this URL host an IP address *in any form a
  resolver accepts*?  Besides the canonical dotted quad and IPv6 this means
  the legacy ``inet_aton`` forms: decimal ``2130706433``, hex ``0x7f000001``,
  octal ``0177.0.0.1`` and short ``127.1`` -- ``getaddrinfo`` turns all of
  them into 127.0.0.1, so a guard that only knows dotted quads is bypassed.
* ``classify(ip)``: why an address must not be connected to (``loopback``,
  ``private``, ``link-local`` (incl. 169.254.169.254, the cloud metadata
  service), ``multicast``, ``reserved``, ``unspecified``, ``cgnat``,
  ``not-global``), or ``None`` for a public address.  IPv4-mapped
  (``::ffff:127.0.0.1``), NAT64 (``64:ff9b::/96``) and 6to4 (``2002::/16``)
  IPv6 addresses are judged by the IPv4 address they carry.

``Allowlist`` holds the ``NEWS_ALLOW_PRIVATE`` entries.  Entries are matched
on the *resolved IP address and port*, never on the host name of the URL:
``"127.0.0.1:8701"`` allows exactly that address and port, ``"[::1]:8701"``
the IPv6 form, ``"10.1.0.0/16"`` (or a bare IP, meaning ``/32``) any port on
those addresses.  A host-name entry such as ``"localhost:8701"`` is resolved
once, when the allowlist is built, and allows the addresses it resolved to
on that port.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pipeline.core.config import ip_literal

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: RFC 6598 shared address space (carrier-grade NAT); not covered by
#: ``ipaddress.is_private`` on every Python version, so named explicitly.
CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
#: RFC 6052 well-known NAT64 prefix: the low 32 bits are an IPv4 address.
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

# What inet_aton accepts: 1 to 4 parts, each decimal, octal (leading 0) or
# hex (0x); an optional trailing dot as getaddrinfo tolerates it.  Checked
# before calling inet_aton, because glibc's inet_aton also accepts trailing
# garbage after whitespace ("127.0.0.1 junk").


def parse_ip_literal(host: str) -> IPAddress | None:
    """The IP address a URL host denotes if it is an IP literal in any form (127.1, 0x7f000001, 2130706433,
    0177.0.0.1, [::1]), else None. One definition with the sources file's check: `config.ip_literal`."""
    return ip_literal(host)


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address carried inside an IPv6 one (mapped, NAT64, 6to4), if any."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    return None


def classify(ip: IPAddress | str) -> str | None:
    """The reason *ip* is not a public address (see module doc), or None when it is."""
    if isinstance(ip, str):
        ip = ipaddress.ip_address(ip.split("%", 1)[0])
    inner = embedded_ipv4(ip)
    if inner is not None:
        reason = classify(inner)
        return f"{reason} (embedded IPv4 {inner})" if reason else None
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if isinstance(ip, ipaddress.IPv4Address) and ip in CGNAT:
        return "cgnat"
    if ip.is_reserved:  # before is_private: Python counts 240.0.0.0/4 as both
        return "reserved"
    if ip.is_private:
        return "private"
    if not ip.is_global:
        return "not-global"
    return None


def _split_host_port(entry: str) -> tuple[str, int | None]:
    """``"1.2.3.4:80"``, ``"[::1]:80"``, ``"host:80"``, ``"::1"`` -> (host, port|None)."""
    if entry.startswith("["):
        host, sep, rest = entry[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"bad allowlist entry {entry!r}")
        return host, int(rest[1:]) if rest else None
    if entry.count(":") == 1:
        host, port = entry.split(":")
        return host, int(port)
    return entry, None  # bare IPv4/IPv6 address or host name, any port


def _system_lookup(host: str) -> list[str]:
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    # sockaddr[0] is the address text for AF_INET/AF_INET6 (typeshed says str | int for AF_CAN etc.)
    return sorted({str(info[4][0]) for info in infos})


@dataclass
class Allowlist:
    """Explicit exceptions to the guard: (ip, port) pairs and networks (any port)."""

    pairs: set[tuple[IPAddress, int]] = field(default_factory=set)
    networks: list[IPNetwork] = field(default_factory=list)
    entries: tuple[str, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str], lookup: Callable[[str], list[str]] = _system_lookup) -> Allowlist:
        """Build from ``NEWS_ALLOW_PRIVATE`` strings; a bad entry raises ValueError naming it."""
        out = cls()
        kept = []
        for raw in entries:
            entry = raw.strip()
            if not entry:
                continue
            kept.append(entry)
            try:
                if "/" in entry:
                    out.networks.append(ipaddress.ip_network(entry, strict=False))
                    continue
                host, port = _split_host_port(entry)
                if port is not None and not 0 < port < 65536:
                    raise ValueError(f"port out of range in {entry!r}")
                ip = parse_ip_literal(host)
                ips = [ip] if ip is not None else [ipaddress.ip_address(a) for a in lookup(host)]
            except (ValueError, OSError) as exc:
                raise ValueError(f"NEWS_ALLOW_PRIVATE: bad entry {entry!r}: {exc}") from exc
            for addr in ips:
                if port is None:
                    out.networks.append(ipaddress.ip_network(addr))
                else:
                    out.pairs.add((addr, port))
        out.entries = tuple(kept)
        return out

    def allows(self, ip: IPAddress, port: int | None) -> bool:
        candidates = [ip]
        inner = embedded_ipv4(ip)
        if inner is not None:
            candidates.append(inner)
        for cand in candidates:
            if port is not None and (cand, port) in self.pairs:
                return True
            if any(cand.version == net.version and cand in net for net in self.networks):
                return True
        return False


def check_address(ip: IPAddress | str, port: int | None, allow: Allowlist) -> str | None:
    """None when connecting to ``ip:port`` is fine, else the reason it is refused."""
    if isinstance(ip, str):
        ip = ipaddress.ip_address(ip.split("%", 1)[0])
    reason = classify(ip)
    if reason is None or allow.allows(ip, port):
        return None
    where = f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"
    if port is None:
        where = str(ip)
    return f"{where} is {reason} (not in NEWS_ALLOW_PRIVATE)"


def default_port(scheme: str) -> int | None:
    return {"http": 80, "https": 443, "ftp": 21}.get(scheme.lower())
