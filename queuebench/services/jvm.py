"""Kafka and ElasticMQ: Java servers run from jars that Maven copies out of Maven Central; and
the brokers' Java load tools (Kafka's perf tools, RabbitMQ's PerfTest), fetched the same way."""

import base64
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path

from queuebench.services.base import Service
from queuebench.services.catalog import HOST, PACKAGE_DIR, PROXY_PORT_OFFSET, state_root
from queuebench.services.durability import elasticmq_storage
from queuebench.services.installers import maven_copy_dependencies
from queuebench.services.processes import CommandFailed, port_open, run, spawn_detached

PROBE_TIMEOUT = 3

# The JVM flags of Kafka's own kafka-server-start.sh, with its 1 GB heap.
KAFKA_JVM_OPTIONS = [
    "-Xms1g", "-Xmx1g", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
]

# Kafka's command-line tools, by the name `python -m queuebench.services kafka-perf NAME` takes.
KAFKA_TOOLS = {
    "producer": "org.apache.kafka.tools.ProducerPerformance",
    "consumer": "org.apache.kafka.tools.ConsumerPerformance",
    "topics": "org.apache.kafka.tools.TopicCommand",
}

RABBITMQ_PERF_TEST_POM = PACKAGE_DIR / "rabbitmq-perf-test" / "pom.xml"


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes in URL-safe base64 without padding. Like Kafka's own
    Uuid.randomUuid, never one that starts with "-": the storage tool would read it as an option."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def log4j2_console_config(level: str, target: str) -> str:
    """A log4j2 configuration that logs to stdout or stderr (SYSTEM_OUT, SYSTEM_ERR)."""
    return f"""\
rootLogger.level = {level}
rootLogger.appenderRef.console.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = {target}
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
"""


def java_binary() -> str:
    found = shutil.which("java")
    if found is None:
        raise CommandFailed("java is not installed: apt-get install openjdk-17-jre-headless")
    return found


def rabbitmq_perf_test_command(args: Sequence[str]) -> list[str]:
    """The java command line for RabbitMQ's PerfTest; its jars are copied on first use."""
    lib_dir = state_root() / "rabbitmq-perf-test" / "lib"
    maven_copy_dependencies(RABBITMQ_PERF_TEST_POM, lib_dir)
    return [java_binary(), "-cp", f"{lib_dir}/*", "com.rabbitmq.perf.PerfTest", *args]


class JavaService(Service):
    """A server started as `java -cp lib/* MAIN_CLASS`, its jars listed in a pom next to us."""

    pom: Path

    @property
    def lib_dir(self) -> Path:
        return self.dir / "lib"

    @property
    def classpath(self) -> str:
        return f"{self.lib_dir}/*"

    def install(self) -> None:
        maven_copy_dependencies(self.pom, self.lib_dir)


class Kafka(JavaService):
    """A single KRaft node that is both broker and controller."""

    command_marker = "kafka.Kafka"
    pom = PACKAGE_DIR / "kafka" / "pom.xml"

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    def server_properties(self) -> str:
        controller_port, proxied_port = self.spec.other_ports
        # A Kafka client connects to the addresses the broker advertises, not to the one it was
        # given: the PROXIED listener advertises Toxiproxy's port, so a client that starts there
        # stays behind the proxy (faults/network.py).
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{HOST}:{controller_port}",
            "listeners": f"PLAINTEXT://{HOST}:{self.port},CONTROLLER://{HOST}:{controller_port},"
                         f"PROXIED://{HOST}:{proxied_port}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{self.port},"
                                    f"PROXIED://{HOST}:{proxied_port + PROXY_PORT_OFFSET}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map":
                "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,PROXIED:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            "auto.create.topics.enable": "true",
            # One node: internal topics cannot have more than one replica.
            "offsets.topic.replication.factor": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            # Consumers join a group at once instead of after the default 3 s.
            "group.initial.rebalance.delay.ms": "0",
            # message.max.bytes is left at its default (1048588), so 1.7 MB records fail.
        }
        return "".join(f"{key}={value}\n" for key, value in settings.items())

    def java_command(self, log_config: Path, main_class: str, *args: str,
                     jvm_options: Sequence[str] = ()) -> list[str]:
        return [java_binary(), *jvm_options, f"-Dlog4j2.configurationFile={log_config}",
                "-cp", self.classpath, main_class, *args]

    def launch(self) -> None:
        properties = self.dir / "server.properties"
        properties.write_text(self.server_properties())
        log_config = self.dir / "log4j2.properties"
        log_config.write_text(log4j2_console_config("INFO", "SYSTEM_OUT"))
        if not (self.data_dir / "meta.properties").exists():
            run(self.java_command(log_config, "kafka.tools.StorageTool", "format",
                                  f"--cluster-id={new_cluster_id()}", "--config", str(properties)))
        command = self.java_command(log_config, "kafka.Kafka", str(properties),
                                    jvm_options=KAFKA_JVM_OPTIONS)
        spawn_detached(command, log_file=self.log_file, pid_file=self.pid_file, cwd=self.dir)

    def probe(self) -> str:
        from confluent_kafka.admin import AdminClient

        # librdkafka logs every refused connection; only ask once something listens.
        if not port_open(self.port):
            raise ConnectionRefusedError(f"nothing listens on port {self.port} yet")
        metadata = AdminClient({"bootstrap.servers": f"{HOST}:{self.port}"}).list_topics(
            timeout=PROBE_TIMEOUT)
        return (f"Kafka {self.version}, cluster {metadata.cluster_id}, "
                f"{len(metadata.brokers)} broker at {HOST}:{self.port}")

    def tool_command(self, tool: str, args: list[str]) -> list[str]:
        """The java command line for one of KAFKA_TOOLS, e.g. ProducerPerformance."""
        if tool not in KAFKA_TOOLS:
            raise ValueError(f"unknown Kafka tool {tool!r}; choose from {', '.join(KAFKA_TOOLS)}")
        self.install()
        # The tools print their results on stdout: keep Kafka's own logging out of it.
        log_config = self.dir / "tools-log4j2.properties"
        log_config.write_text(log4j2_console_config("WARN", "SYSTEM_ERR"))
        return self.java_command(log_config, KAFKA_TOOLS[tool], *args)


class ElasticMQ(JavaService):
    """An SQS server with AWS's message size limit (1 MiB), to check what SQS clients do."""

    command_marker = "org.elasticmq.server.Main"
    pom = PACKAGE_DIR / "elasticmq" / "pom.xml"

    def config(self) -> str:
        """Its address, SQS's own limits, and the storage of the durability mode last applied
        (services/durability.py)."""
        return f"""\
include classpath("application.conf")
node-address {{ protocol = http, host = "{HOST}", port = {self.port}, context-path = "" }}
rest-sqs {{
  enabled = true, bind-port = {self.port}, bind-hostname = "{HOST}", sqs-limits = strict
}}
rest-stats {{ enabled = false }}
{elasticmq_storage(self.dir)}"""

    def launch(self) -> None:
        config_file = self.dir / "elasticmq.conf"
        config_file.write_text(self.config())
        spawn_detached(
            [java_binary(), "-Xmx512m", f"-Dconfig.file={config_file}", "-cp", self.classpath,
             "org.elasticmq.server.Main"],
            log_file=self.log_file, pid_file=self.pid_file, cwd=self.dir,
        )

    def probe(self) -> str:
        import boto3
        from botocore.config import Config

        client = boto3.client(
            "sqs", endpoint_url=f"http://{HOST}:{self.port}", region_name="us-east-1",
            aws_access_key_id="queuebench", aws_secret_access_key="queuebench",
            config=Config(retries={"max_attempts": 0}, connect_timeout=PROBE_TIMEOUT,
                          read_timeout=PROBE_TIMEOUT),
        )
        queues = client.list_queues().get("QueueUrls", [])
        return f"ElasticMQ {self.version}, {len(queues)} queue(s) at {self.url}"
