"""A name resolver that never hands the downloader a non-public address.

``GuardedResolver`` is a Twisted ``IHostnameResolver``.  Scrapy's HTTP/1.1
download handler connects through Twisted's ``HostnameEndpoint``, which asks
the reactor's *name resolver* for every host -- IP literals included -- and
passes the port along, so this is the one place where the address actually
connected to can be checked against ``ip:port`` allowlist entries.  Checking
here (rather than only in a middleware before the download) also closes the
DNS-rebinding gap: a name that resolved to a public address when the
middleware looked can resolve to 127.0.0.1 when the connection is made.

Addresses that ``spiders.netguard.check_address`` refuses are dropped from
the answer; when none is left the endpoint fails with Twisted's
``DNSLookupError``.  The refusal reason is logged and remembered in
``blocked_reasons`` (host -> reason) so ``SsrfGuardMiddleware`` can turn the
``DNSLookupError`` into an ``IgnoreRequest("ssrf_blocked: ...")``.

Enable with (Scrapy 2.19 name; ``DNS_RESOLVER`` still works but is deprecated)::

    TWISTED_DNS_RESOLVER = "spiders.resolver.GuardedResolver"
    NEWS_ALLOW_PRIVATE = ["127.0.0.1:8701", "10.1.0.0/16"]

Limits, by Scrapy's design: the resolver is built once per process from the
*process* settings (``scrapy crawl`` project/command-line settings; a
spider's ``custom_settings`` do not reach it), and only by ``CrawlerProcess``
/ ``AsyncCrawlerProcess`` (a ``CrawlerRunner`` in someone else's reactor does
not install it).  Download handlers that do not use Twisted's endpoints
(the httpx/aiohttp ones, proxies) are covered only by the middleware.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attr
from scrapy.utils.datatypes import LocalCache
from twisted.internet.interfaces import (
    IAddress,
    IHostnameResolver,
    IHostResolution,
    IResolutionReceiver,
)
from zope.interface import implementer, provider

from spiders.netguard import Allowlist, check_address

if TYPE_CHECKING:
    from typing import Self

logger = logging.getLogger(__name__)

# _ZOPE: the `type: ignore`s below marked "zope" are for mypy without a zope.interface plugin:
# it reads interface methods as methods missing `self`, and does not see that an
# @implementer(I...) class provides I.


@implementer(IHostResolution)
class _CachedResolution:
    def __init__(self, name: str):
        self.name = name

    def cancel(self) -> None:  # answered synchronously from the cache: nothing to cancel
        return None


@provider(IResolutionReceiver)
class _GuardingReceiver:
    """Passes on the addresses the guard accepts; records the ones it drops."""

    def __init__(self, resolver: GuardedResolver, receiver: IResolutionReceiver, host: str, port: int):
        self.resolver = resolver
        self.receiver = receiver
        self.host = host
        self.port = port
        self.raw: list[IAddress] = []
        self.delivered = 0
        self.refused: list[str] = []

    def resolutionBegan(self, resolution: IHostResolution) -> None:
        self.receiver.resolutionBegan(resolution)  # type: ignore[call-arg, misc]  # zope: see _ZOPE

    def addressResolved(self, address: IAddress) -> None:
        self.raw.append(address)
        self.deliver(address)

    def deliver(self, address: IAddress) -> None:
        reason = self.resolver.check(self.host, self.port, address)
        if reason is None:
            self.delivered += 1
            if self.port and getattr(address, "port", self.port) != self.port:
                # IAddress is a zope interface; the addresses with a port (IPv4Address, IPv6Address) are attrs classes
                address = attr.evolve(address, port=self.port)  # type: ignore[misc]
            self.receiver.addressResolved(address)  # type: ignore[call-arg, misc]  # zope: see _ZOPE
        else:
            self.refused.append(reason)
            logger.warning("ssrf_blocked (resolver): %s", reason)

    def resolutionComplete(self) -> None:
        if self.raw and self.resolver.cache.limit:
            self.resolver.cache[self.host] = list(self.raw)
        self.resolver.completed(self)
        self.receiver.resolutionComplete()  # type: ignore[misc]  # zope: see _ZOPE


@implementer(IHostnameResolver)
class GuardedResolver:
    """``IHostnameResolver`` wrapping the reactor's own, filtering out non-public addresses."""

    def __init__(self, reactor: Any, allow: Allowlist, cache_size: int = 10000):
        self.reactor = reactor
        self.allow = allow
        self.original_resolver: IHostnameResolver = reactor.nameResolver
        self.cache: LocalCache[str, list[IAddress]] = LocalCache(cache_size)
        #: host -> reason of the last refusal, for SsrfGuardMiddleware's reports
        self.blocked_reasons: LocalCache[str, str] = LocalCache(10000)
        self.blocked_count = 0

    @classmethod
    def from_crawler(cls, crawler: Any, reactor: Any) -> Self:
        # Scrapy passes the CrawlerProcess here, not a Crawler: only .settings exists.
        settings = crawler.settings
        allow = Allowlist.parse(settings.getlist("NEWS_ALLOW_PRIVATE"))
        size = settings.getint("DNSCACHE_SIZE") if settings.getbool("DNSCACHE_ENABLED") else 0
        return cls(reactor, allow, size)

    def install_on_reactor(self) -> None:
        self.reactor.installNameResolver(self)
        _installed.append(self)

    def resolveHostName(
        self,
        resolutionReceiver: IResolutionReceiver,
        hostName: str,
        portNumber: int = 0,
        addressTypes: Sequence[type[IAddress]] | None = None,
        transportSemantics: str = "TCP",
    ) -> IHostResolution:
        guard = _GuardingReceiver(self, resolutionReceiver, hostName, portNumber)
        cached = self.cache.get(hostName) if self.cache.limit else None
        if cached:
            resolution = _CachedResolution(hostName)
            resolutionReceiver.resolutionBegan(resolution)  # type: ignore[call-arg, misc]  # zope: see _ZOPE
            for address in cached:
                guard.deliver(address)
            self.completed(guard)
            resolutionReceiver.resolutionComplete()  # type: ignore[misc]  # zope: see _ZOPE
            return resolution  # type: ignore[return-value]  # zope: see _ZOPE
        # zope: see _ZOPE (the stub's arguments look shifted by one)
        args = (guard, hostName, portNumber, addressTypes, transportSemantics)
        return self.original_resolver.resolveHostName(*args)  # type: ignore[call-arg, arg-type, misc]

    def check(self, host: str, port: int, address: IAddress) -> str | None:
        """None when ``address`` may be connected to, else why not."""
        ip = getattr(address, "host", None)
        if ip is None:  # not an IP address (e.g. a UNIX socket): nothing we can vouch for
            return f"{host} -> {address!r} is not an IP address"
        reason = check_address(ip, port or getattr(address, "port", None), self.allow)
        return None if reason is None else f"{host} -> {reason}"

    def completed(self, guard: _GuardingReceiver) -> None:
        self.blocked_count += len(guard.refused)
        if guard.refused and not guard.delivered:
            # nothing left to connect to: the endpoint fails with DNSLookupError
            self.blocked_reasons[guard.host] = guard.refused[0]
        else:
            self.blocked_reasons.pop(guard.host, None)


#: Resolvers installed in this process (normally one), so middlewares can
#: look up why a DNSLookupError happened.
_installed: list[GuardedResolver] = []


def installed_resolver() -> GuardedResolver | None:
    return _installed[-1] if _installed else None
