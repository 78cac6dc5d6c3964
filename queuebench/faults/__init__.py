"""Faults beyond the consumer: the broker stopped or killed, the network cut or slowed, a worker
frozen. Each is an object the engine injects at its trigger and heals after its duration:

    fault = BrokerFault("redis", "kill")      # broker.py
    fault = NetworkFault(proxy, "blackhole")  # network.py, through Toxiproxy
    fault = PauseFault(session_ids)           # pause.py, SIGSTOP then SIGCONT

A fault that is injected is also written down for the healer (healer.py), a watchdog process
that heals it should the run die before it does: a fault never leaves a broker down, a proxy cut
or a worker frozen behind it.
"""

from queuebench.faults.base import Fault, HealOrder
from queuebench.faults.broker import BrokerFault, service_of
from queuebench.faults.network import NetworkFault, Toxiproxy, proxied_url
from queuebench.faults.pause import PauseFault

__all__ = ["BrokerFault", "Fault", "HealOrder", "NetworkFault", "PauseFault", "Toxiproxy",
           "proxied_url", "service_of"]
