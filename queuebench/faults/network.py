"""The network between the clients and the broker cut or slowed, through Toxiproxy.

Producers and consumers reach the broker through a proxy of their own (`proxied_url` swaps the
pair URL's port for the proxy's); the engine's own checks (backlog, prepare) go direct, so a cut
cannot hang the harness. Kinds:

- `cut`: the proxy disabled: every connection closed at once and new ones refused, as a broker
  host that went away and a client that notices at once.
- `blackhole`: Toxiproxy's `timeout` toxic with timeout 0 both ways: connections stay open and
  data is dropped, with no reset, which is what a dead switch looks like and what heartbeats
  exist for.
- `latency`: `latency` ms added each way, with `jitter`; and `bandwidth` KB/s if given.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from urllib.parse import urlsplit, urlunsplit

from queuebench.errors import QueuebenchError
from queuebench.faults.base import HealOrder
from queuebench.services.catalog import HOST, PROXY_PORT_OFFSET, SERVICES

KINDS = ("cut", "blackhole", "latency")
API_TIMEOUT_SEC = 5.0
STREAMS = ("upstream", "downstream")


class Toxiproxy:
    """Toxiproxy's HTTP API, as much as the faults use."""

    def __init__(self, url: str = SERVICES["toxiproxy"].url) -> None:
        self.url = url.rstrip("/")

    def call(self, method: str, path: str, body: dict | None = None) -> object:
        request = urllib.request.Request(
            self.url + path, method=method, headers={"Content-Type": "application/json"},
            data=json.dumps(body).encode() if body is not None else None)
        try:
            with urllib.request.urlopen(request, timeout=API_TIMEOUT_SEC) as response:
                text = response.read()
        except urllib.error.HTTPError as exc:
            raise QueuebenchError(f"Toxiproxy {method} {path}: {exc.code} "
                                  f"{exc.read().decode(errors='replace').strip()}") from None
        except OSError as exc:
            raise QueuebenchError(f"Toxiproxy does not answer at {self.url} ({exc}); start it "
                                  "with `make services-up`") from None
        return json.loads(text) if text.strip() else None

    def proxy(self, name: str, upstream_port: int, port: int | None = None) -> int:
        """A proxy to 127.0.0.1:`upstream_port`, enabled and without toxics, listening on `port`
        (default: the upstream's + PROXY_PORT_OFFSET); its port."""
        port = port or upstream_port + PROXY_PORT_OFFSET
        proxies = self.call("GET", "/proxies")
        if name in proxies:  # left by an earlier run: as new
            self.call("DELETE", f"/proxies/{name}")
        self.call("POST", "/proxies", {"name": name, "listen": f"{HOST}:{port}",
                                       "upstream": f"{HOST}:{upstream_port}", "enabled": True})
        return port

    def reset(self) -> None:
        """Every proxy enabled, every toxic gone."""
        self.call("POST", "/reset")


def proxied_url(pair_url: str, port: int) -> str:
    """`pair_url` with its port swapped for the proxy's (user, password, path kept)."""
    parts = urlsplit(pair_url)
    credentials, _, _ = parts.netloc.rpartition("@")
    netloc = f"{credentials}@{HOST}:{port}" if credentials else f"{HOST}:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


class NetworkFault:
    def __init__(self, toxiproxy: Toxiproxy, proxy: str, kind: str, *, latency_ms: float = 0,
                 jitter_ms: float = 0, bandwidth_kb_s: int | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"a network fault is one of {', '.join(KINDS)}, not {kind!r}")
        self.toxiproxy, self.proxy, self.mode = toxiproxy, proxy, kind
        self.kind = f"network-{kind}"
        self.latency_ms, self.jitter_ms, self.bandwidth_kb_s = latency_ms, jitter_ms, bandwidth_kb_s

    def _toxics(self) -> list[dict]:
        if self.mode == "blackhole":
            return [{"type": "timeout", "attributes": {"timeout": 0}}]
        toxics = [{"type": "latency", "attributes": {"latency": int(self.latency_ms),
                                                     "jitter": int(self.jitter_ms)}}]
        if self.bandwidth_kb_s:
            toxics.append({"type": "bandwidth", "attributes": {"rate": self.bandwidth_kb_s}})
        return toxics

    def inject(self) -> None:
        if self.mode == "cut":
            self.toxiproxy.call("POST", f"/proxies/{self.proxy}", {"enabled": False})
            return
        for toxic in self._toxics():
            for stream in STREAMS:
                self.toxiproxy.call("POST", f"/proxies/{self.proxy}/toxics",
                                    {**toxic, "name": f"{toxic['type']}-{stream}",
                                     "stream": stream, "toxicity": 1.0})

    def heal(self) -> None:
        if self.mode == "cut":
            self.toxiproxy.call("POST", f"/proxies/{self.proxy}", {"enabled": True})
            return
        for toxic in self._toxics():
            for stream in STREAMS:
                self.toxiproxy.call("DELETE", f"/proxies/{self.proxy}/toxics/"
                                              f"{toxic['type']}-{stream}")

    def heal_order(self) -> HealOrder:
        return HealOrder(toxiproxy=self.toxiproxy.url)
