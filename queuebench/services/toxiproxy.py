"""Toxiproxy, a TCP proxy that injects latency, bandwidth limits and cuts between a client
and a broker (`tc netem` is not available on these kernels)."""

import json
import urllib.request
from pathlib import Path

from queuebench.services.base import Service
from queuebench.services.catalog import HOST
from queuebench.services.installers import go_install
from queuebench.services.processes import spawn_detached

GO_MODULE = "github.com/Shopify/toxiproxy/v2"
PROBE_TIMEOUT = 3


class Toxiproxy(Service):
    command_marker = "toxiproxy-server"

    def binary(self) -> Path:
        # Stamp the version as Toxiproxy's release builds do; plain go install says "git".
        return go_install(f"{GO_MODULE}/cmd/server", f"v{self.version}", "toxiproxy-server",
                          self.dir / "bin", ldflags=f"-X {GO_MODULE}.Version={self.version}")

    def install(self) -> None:
        self.binary()

    def launch(self) -> None:
        spawn_detached([str(self.binary()), "-host", HOST, "-port", str(self.port)],
                       log_file=self.log_file, pid_file=self.pid_file, cwd=self.dir)

    def probe(self) -> str:
        with urllib.request.urlopen(f"{self.url}/version", timeout=PROBE_TIMEOUT) as response:
            version = json.load(response)["version"]
        with urllib.request.urlopen(f"{self.url}/proxies", timeout=PROBE_TIMEOUT) as response:
            proxies = json.load(response)
        return f"Toxiproxy {version}, {len(proxies)} proxies at {self.url}"
