"""Who the client is behind a proxy: X-Forwarded-For / Forwarded, believed only from trusted
peers (--forwarded-allow-ips)."""
from __future__ import annotations

import ipaddress


class Proxies:
    def __init__(self, allow: str):
        """allow: comma-separated addresses and networks, or "*" for every peer (as uvicorn
        reads it). ValueError names an entry that is neither."""
        items = [item.strip() for item in allow.split(",") if item.strip()]
        self.trust_all = "*" in items
        self.networks = []
        for item in items:
            if item == "*":
                continue
            try:
                self.networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"--forwarded-allow-ips: {item!r} is not an address, a "
                                 f"network or *") from None
        self._seen: dict[str, bool] = {}       # host -> trusted, worked out once per host

    def trusts(self, host: str) -> bool:
        if self.trust_all:
            return True
        trusted = self._seen.get(host)
        if trusted is None:
            try:
                addr = ipaddress.ip_address(host)
                trusted = any(addr in net for net in self.networks)
                # an IPv4 peer on a dual-stack listener (--host ::) is ::ffff:a.b.c.d: the
                # operator names it as IPv4
                mapped = getattr(addr, "ipv4_mapped", None)
                if not trusted and mapped is not None:
                    trusted = any(mapped in net for net in self.networks)
            except ValueError:
                trusted = False
            if len(self._seen) >= 4096:         # bounded: a client cannot grow it forever
                self._seen.clear()
            self._seen[host] = trusted
        return trusted

    def client(self, req) -> tuple:
        """The first address, walking back from the nearest hop, that is not a trusted proxy.
        Forwarded (RFC 7239) wins over X-Forwarded-For when both are present."""
        hops = self._forwarded(req.headers.getall("forwarded")) or [
            h.strip() for v in req.headers.getall("x-forwarded-for") for h in v.split(",")]
        for host in reversed(hops):
            if host and not self.trusts(host):
                return (host, 0)
        if self.trust_all:                  # every hop is trusted: the first is the client
            for host in hops:
                if host:
                    return (host, 0)
        return req.client

    @staticmethod
    def scheme(req) -> str | None:
        """What the nearest proxy says the client used: Forwarded's proto, else
        X-Forwarded-Proto; None when neither is there (or is http/https)."""
        for value in req.headers.getall("forwarded")[-1:]:
            for pair in value.split(",")[-1].split(";"):
                name, _, val = pair.strip().partition("=")
                if name.lower() == "proto":
                    val = val.strip('"').lower()
                    return val if val in ("http", "https") else None
        value = req.headers.get("x-forwarded-proto")
        if value is not None:
            value = value.split(",")[-1].strip().lower()
            return value if value in ("http", "https") else None
        return None

    @staticmethod
    def _forwarded(values: list[str]) -> list[str]:
        hops = []
        for value in values:
            for element in value.split(","):
                for pair in element.split(";"):
                    name, _, val = pair.strip().partition("=")
                    if name.lower() == "for":
                        val = val.strip('"')
                        if val.startswith("["):                 # "[2001:db8::1]:4711"
                            val = val[1:val.find("]")]
                        elif val.count(":") == 1:               # "192.0.2.60:4711"
                            val = val.split(":")[0]
                        hops.append(val)
        return hops
