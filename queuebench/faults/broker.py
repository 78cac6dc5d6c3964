"""The broker stopped (its own graceful shutdown) or killed (SIGKILL), then started again, through
the project's own service manager (`python -m queuebench.services`)."""

from __future__ import annotations

import os
import signal
import time

from queuebench.errors import QueuebenchError
from queuebench.faults.base import HealOrder
from queuebench.services import service
from queuebench.services.processes import pid_alive, wait_for

# The service that runs each broker of a pair's scheme ("rq+redis" -> "redis").
SERVICES = {"redis": "redis", "rabbitmq": "rabbitmq", "kafka": "kafka", "postgres": "postgres",
            "sqs": "elasticmq"}
GONE_TIMEOUT_SEC = 30.0


def service_of(pair_scheme: str) -> str | None:
    """The service a pair's broker runs as; None for an embedded broker (SQLite)."""
    return SERVICES.get(pair_scheme.partition("+")[2])


class BrokerFault:
    """`mode` "stop": the broker's graceful shutdown; "kill": SIGKILL, as a crash or the OOM
    killer would. A process crash leaves the page cache intact (what the broker wrote reaches
    the disk anyway); only a power loss would not, which this machine cannot do."""

    def __init__(self, service_name: str, mode: str) -> None:
        if mode not in ("stop", "kill"):
            raise ValueError(f"a broker fault stops or kills, not {mode!r}")
        self.service = service(service_name)
        self.mode = mode
        self.kind = f"broker-{mode}"

    def inject(self) -> None:
        pid = self.service.pid()
        if pid is None:
            raise QueuebenchError(f"{self.service.name} is not running: start it with "
                                  "`make services-up`")
        if self.mode == "stop":
            self.service.stop()
            return
        os.kill(pid, signal.SIGKILL)
        if not wait_for(lambda: not pid_alive(pid, self.service.command_marker),
                        GONE_TIMEOUT_SEC, interval=0.05):
            raise QueuebenchError(f"{self.service.name} (pid {pid}) outlived SIGKILL")
        self.service.after_stop()

    def heal(self) -> None:
        started = time.monotonic()
        self.service.start()  # waits until the broker answers a client again
        self.restart_sec = round(time.monotonic() - started, 3)

    def heal_order(self) -> HealOrder:
        return HealOrder(services=[self.service.name])
