"""Real brokers on 127.0.0.1 without Docker: install, start, stop, restart, check.

    from queuebench.services import SERVICES, service
    kafka = service("kafka")
    kafka.start()            # installs on first use, waits until a client request succeeds
    kafka.restart()
    kafka.status().state     # "healthy", "running", "stopped" or "foreign"

The same from the shell: `python -m queuebench.services up|down|status [NAME ...]`.
"""

from queuebench.services.base import Service, ServiceError, ServiceStatus
from queuebench.services.catalog import SERVICES, ServiceSpec, state_root
from queuebench.services.debian import Postgres, RabbitMQ, Redis
from queuebench.services.jvm import ElasticMQ, Kafka
from queuebench.services.toxiproxy import Toxiproxy

__all__ = ["SERVICES", "Service", "ServiceError", "ServiceSpec", "ServiceStatus", "service"]

_IMPLEMENTATIONS: dict[str, type[Service]] = {
    "redis": Redis,
    "rabbitmq": RabbitMQ,
    "postgres": Postgres,
    "kafka": Kafka,
    "elasticmq": ElasticMQ,
    "toxiproxy": Toxiproxy,
}


def service(name: str) -> Service:
    """The service called name (a key of SERVICES); ValueError for any other name."""
    if name not in SERVICES:
        raise ValueError(f"unknown service {name!r}; choose from {', '.join(SERVICES)}")
    return _IMPLEMENTATIONS[name](SERVICES[name], state_root())
