"""Redis, RabbitMQ and PostgreSQL from Debian's packages, run without systemd."""

import os
import pwd
import shutil
import signal
import subprocess
from pathlib import Path

from queuebench.services.base import Service
from queuebench.services.catalog import HOST
from queuebench.services.durability import redis_launch_settings
from queuebench.services.installers import ensure_debian_packages
from queuebench.services.processes import CommandFailed, port_open, run, spawn_detached

PROBE_TIMEOUT = 3


class Redis(Service):
    command_marker = "redis-server"

    def install(self) -> None:
        ensure_debian_packages(["redis-server"])

    def launch(self) -> None:
        # No persistence unless a run asked for a durability mode (services/durability.py):
        # a restart in the middle of a fault run comes back with the mode it went down with.
        persistence = [part for key, value in redis_launch_settings(self.dir).items()
                       for part in (f"--{key}", value)]
        spawn_detached(
            ["redis-server", "--bind", HOST, "--port", str(self.port), *persistence,
             "--dir", str(self.dir), "--daemonize", "no"],
            log_file=self.log_file, pid_file=self.pid_file,
        )

    def probe(self) -> str:
        import redis

        client = redis.Redis(host=HOST, port=self.port, socket_timeout=PROBE_TIMEOUT,
                             socket_connect_timeout=PROBE_TIMEOUT)
        with client:
            client.ping()
            return f"redis {client.info('server')['redis_version']} at {self.url}"


class RabbitMQ(Service):
    command_marker = "beam.smp"
    start_timeout = 180
    # The node writes its pid file once its boot gets there: 2-3 s on a quiet machine, over
    # 15 s while 900 consumer threads of another run share the 2 cores (a heal then failed).
    pid_file_within = 90
    rabbitmq_bin = Path("/usr/lib/rabbitmq/bin")  # the real scripts, not Debian's su wrappers

    def install(self) -> None:
        ensure_debian_packages(["rabbitmq-server"])

    def environment(self) -> dict[str, str]:
        """Everything the node and its CLI tools keep goes under self.dir, not /var/lib."""
        return {
            **os.environ,
            "HOME": str(self.dir),  # the Erlang cookie, shared by the server and rabbitmqctl
            "RABBITMQ_NODENAME": "rabbit@localhost",
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_LOGS": "-",  # to stdout, that is our log file
            "RABBITMQ_PID_FILE": str(self.pid_file),
            "ERL_EPMD_ADDRESS": HOST,
        }

    def launch(self) -> None:
        (self.dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = {HOST}:{self.port}\n"
            f"distribution.listener.interface = {HOST}\n"
            f"distribution.listener.port_range.min = {self.spec.other_ports[0]}\n"
            f"distribution.listener.port_range.max = {self.spec.other_ports[0]}\n"
        )
        (self.dir / "rabbitmq-env.conf").write_text("")  # so /etc/rabbitmq's is not read
        (self.dir / "enabled_plugins").write_text("[].\n")
        # The server writes the pid file (of the Erlang VM) itself.
        spawn_detached([str(self.rabbitmq_bin / "rabbitmq-server")], log_file=self.log_file,
                       pid_file=None, env=self.environment(), cwd=self.dir)

    def probe(self) -> str:
        # The server answers rabbitmq-diagnostics ping before it listens for AMQP: open a
        # real connection instead.
        import pika

        if not port_open(self.port):
            raise ConnectionRefusedError(f"nothing listens on port {self.port} yet")
        parameters = pika.ConnectionParameters(
            host=HOST, port=self.port, credentials=pika.PlainCredentials("guest", "guest"),
            connection_attempts=1, socket_timeout=PROBE_TIMEOUT,
            blocked_connection_timeout=PROBE_TIMEOUT,
        )
        connection = pika.BlockingConnection(parameters)
        connection.close()
        return f"AMQP connection accepted at {self.url}"

    def after_stop(self) -> None:
        super().after_stop()
        # epmd, Erlang's name server, outlives the node; it declines to quit while any
        # other Erlang node still uses it.
        epmd = shutil.which("epmd") or "/usr/lib/erlang/bin/epmd"
        if Path(epmd).exists():
            subprocess.run([epmd, "-kill"], env=self.environment(), capture_output=True)


# Seed 000's 900 consumers of the SQL queue claim rows each on a connection of its own, beside
# the harness's; PostgreSQL's default of 100 refuses the 100th ("too many clients already").
MAX_CONNECTIONS = 1000


class Postgres(Service):
    """An own cluster under self.dir, run as the postgres user (postgres refuses root)."""

    command_marker = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown: SIGTERM would wait for clients to leave
    user = "queuebench"
    password = "queuebench"
    database = "queuebench"

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "postmaster.pid"

    def bin_dir(self) -> Path:
        return Path("/usr/lib/postgresql") / self.version / "bin"

    def install(self) -> None:
        ensure_debian_packages([f"postgresql-{self.version}"])

    def after_stop(self) -> None:
        """A killed postmaster leaves its lock files; its pid, a zombie until pid 1 reaps it,
        still answers kill(pid, 0), so a new postmaster would refuse to start over them."""
        super().after_stop()
        (self.dir / f".s.PGSQL.{self.port}.lock").unlink(missing_ok=True)

    def run_as_postgres(self, *command: str) -> str:
        # From self.dir: the postgres user may not be allowed into the current folder.
        return run(["runuser", "-u", "postgres", "--", *command], cwd=self.dir)

    def launch(self) -> None:
        postgres_user = pwd.getpwnam("postgres")
        os.chown(self.dir, postgres_user.pw_uid, postgres_user.pw_gid)
        try:
            self.run_as_postgres("test", "-w", str(self.dir))
        except (CommandFailed, OSError) as error:
            raise CommandFailed(f"the postgres user cannot write to {self.dir}: a parent "
                                "folder is closed to it; set QUEUEBENCH_STATE_DIR elsewhere"
                                ) from error
        if not (self.data_dir / "PG_VERSION").exists():
            self.create_cluster()
        self.run_as_postgres(
            str(self.bin_dir() / "pg_ctl"), "start", "--wait", "--timeout=60",
            f"--pgdata={self.data_dir}", f"--log={self.log_file}",
            "-o", f"-c listen_addresses={HOST} -c port={self.port} "
                  f"-c unix_socket_directories={self.dir} -c max_connections={MAX_CONNECTIONS}",
        )
        self.create_database()

    def create_cluster(self) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)  # a half-made cluster from a crash
        password_file = self.dir / "password"
        password_file.write_text(self.password)
        password_file.chmod(0o644)
        try:
            self.run_as_postgres(
                str(self.bin_dir() / "initdb"), f"--pgdata={self.data_dir}",
                f"--username={self.user}", f"--pwfile={password_file}",
                "--auth-host=scram-sha-256", "--auth-local=trust",
                "--encoding=UTF8", "--locale=C.UTF-8",
            )
        finally:
            password_file.unlink()

    def create_database(self) -> None:
        """Create the queuebench database if it is missing (checked on every start)."""
        psql = [str(self.bin_dir() / "psql"), "--host", str(self.dir), "--port", str(self.port),
                "--username", self.user, "--dbname", "postgres", "--no-psqlrc", "-tAc"]
        exists = self.run_as_postgres(
            *psql, f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'")
        if exists.strip() != "1":
            self.run_as_postgres(*psql, f'CREATE DATABASE "{self.database}"')

    def probe(self) -> str:
        import psycopg

        with psycopg.connect(self.url, connect_timeout=PROBE_TIMEOUT) as connection:
            (version,) = connection.execute("SHOW server_version").fetchone()
            connection.execute("SELECT 1")
        return f"PostgreSQL {version} at {self.url}"
