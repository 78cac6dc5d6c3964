"""What each broker is: version, ports, origin and client URL. The one place these live.

docker-compose.yml at the repo root repeats the versions and ports for Docker users;
tests/test_services.py checks that it agrees with this file.
"""

import os
from dataclasses import dataclass
from pathlib import Path

STATE_DIR_VARIABLE = "QUEUEBENCH_STATE_DIR"
HOST = "127.0.0.1"
# A broker behind Toxiproxy (network faults) is reached at its port + this: redis 6379 -> 27379,
# rabbitmq 5672 -> 26672, clear of every port a service binds (20000 put RabbitMQ's proxy on its
# own Erlang distribution port, 25672) and below Linux's ephemeral ports (32768 on).
PROXY_PORT_OFFSET = 21000


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    version: str
    port: int
    source: str  # where the server comes from on a machine without Docker
    docker_image: str  # the same server for Docker users, tagged with `version`
    url: str  # how queuebench's adapters reach it
    other_ports: tuple[int, ...] = ()  # also bound by the server, so also checked for conflicts

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.port, *self.other_ports)


SERVICES: dict[str, ServiceSpec] = {
    spec.name: spec
    for spec in (
        ServiceSpec(
            name="redis",
            version="7.0.15",
            port=6379,
            source="Debian 12 package redis-server",
            docker_image="redis",
            url=f"redis://{HOST}:6379/0",
        ),
        ServiceSpec(
            name="rabbitmq",
            version="3.10.8",
            port=5672,
            other_ports=(25672,),  # Erlang distribution, used by rabbitmqctl
            source="Debian 12 package rabbitmq-server (Erlang 25)",
            docker_image="rabbitmq",
            url=f"amqp://guest:guest@{HOST}:5672//",
        ),
        ServiceSpec(
            name="postgres",
            version="15",
            port=5432,
            source="Debian 12 package postgresql (own cluster made by initdb)",
            docker_image="postgres",
            url=f"postgresql://queuebench:queuebench@{HOST}:5432/queuebench",
        ),
        ServiceSpec(
            name="kafka",
            version="4.3.1",
            port=9092,
            # KRaft controller; a listener for clients that go through Toxiproxy (network faults),
            # advertised at the proxy's address so that every connection goes through it
            other_ports=(9093, 9094),
            source="Maven Central org.apache.kafka:kafka_2.13 (queuebench/services/kafka/pom.xml)",
            docker_image="apache/kafka",
            url=f"kafka://{HOST}:9092",
        ),
        ServiceSpec(
            name="elasticmq",
            version="1.7.1",
            port=9324,
            source="Maven Central org.elasticmq:elasticmq-server_2.13 "
            "(queuebench/services/elasticmq/pom.xml)",
            docker_image="softwaremill/elasticmq-native",
            url=f"sqs://{HOST}:9324",
        ),
        ServiceSpec(
            name="toxiproxy",
            version="2.12.0",
            port=8474,
            source="Go module github.com/Shopify/toxiproxy/v2, built by go install",
            docker_image="ghcr.io/shopify/toxiproxy",
            url=f"http://{HOST}:8474",
        ),
    )
}

PACKAGE_DIR = Path(__file__).resolve().parent


def state_root() -> Path:
    """Folder holding every service's data, logs and installed files (git-ignored).

    $QUEUEBENCH_STATE_DIR wins; else `.state/services` in the repo this package was
    imported from (an editable install); else `.state/services` under the current folder.
    """
    override = os.environ.get(STATE_DIR_VARIABLE)
    if override:
        return Path(override).resolve()
    repo_root = PACKAGE_DIR.parents[1]
    base = repo_root if (repo_root / "pyproject.toml").is_file() else Path.cwd()
    return base / ".state" / "services"
