"""The life cycle every service shares: install, start, health, stop, status, logs."""

import fcntl
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from queuebench.redact import redact
from queuebench.services.catalog import ServiceSpec
from queuebench.services.processes import (
    CommandFailed,
    pid_alive,
    port_open,
    port_owner,
    read_pid,
    tail,
    terminate,
)

State = Literal["healthy", "running", "stopped", "foreign"]

LOG_LINES_ON_FAILURE = 30


class ServiceError(RuntimeError):
    """A service could not be installed, started or stopped; the message says which and why."""


@dataclass(frozen=True)
class ServiceStatus:
    """healthy: ours and answering; running: ours, not (yet) answering;
    stopped: not running; foreign: its port is held by a process we did not start."""

    name: str
    state: State
    detail: str
    pid: int | None = None

    def __str__(self) -> str:
        pid = f" pid {self.pid}" if self.pid else ""
        return redact(f"{self.name:<10} {self.state:<8}{pid}  {self.detail}")


class Service:
    """One broker on 127.0.0.1. All state is on disk, so any number of these objects may
    manage the same broker, from any process.

    Subclasses say how to install, launch and probe their server.
    """

    command_marker: str  # a string in the server's command line: tells our server from a reused pid
    stop_signal: int = signal.SIGTERM  # the signal that makes the server shut down cleanly
    start_timeout: float = 120
    # How long a launched server may take to write its pid file before it counts as exited.
    pid_file_within: float = 15
    stop_timeout: float = 60

    def __init__(self, spec: ServiceSpec, state_root: Path) -> None:
        self.spec = spec
        self.dir = state_root / spec.name

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def port(self) -> int:
        return self.spec.port

    @property
    def version(self) -> str:
        return self.spec.version

    @property
    def url(self) -> str:
        return self.spec.url

    @property
    def log_file(self) -> Path:
        return self.dir / f"{self.name}.log"

    @property
    def pid_file(self) -> Path:
        return self.dir / f"{self.name}.pid"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.version} on port {self.port}>"

    # --- what each server does differently ---

    def install(self) -> None:
        """Fetch and build what the server needs; quick when it is already there."""
        raise NotImplementedError

    def launch(self) -> None:
        """Start the server in the background (self.dir exists); do not wait for it."""
        raise NotImplementedError

    def probe(self) -> str:
        """Make one real client request; return a short description of the server or raise."""
        raise NotImplementedError

    # --- the shared life cycle ---

    def pid(self) -> int | None:
        """The pid of our running server, or None."""
        pid = read_pid(self.pid_file)
        return pid if pid is not None and pid_alive(pid, self.command_marker) else None

    def status(self) -> ServiceStatus:
        pid = self.pid()
        if pid is None:
            taken = [port for port in self.spec.ports if port_open(port)]
            if taken:
                return ServiceStatus(self.name, "foreign",
                                     f"port {taken[0]} is held by {port_owner(taken[0])}, "
                                     "which queuebench did not start")
            return ServiceStatus(self.name, "stopped", "not running")
        try:
            return self._probe(pid)
        except ImportError as error:
            return ServiceStatus(self.name, "running", f"cannot probe it: {error}", pid)

    def _probe(self, pid: int) -> ServiceStatus:
        """healthy or running, by one client request; ImportError if the client is missing."""
        try:
            return ServiceStatus(self.name, "healthy", self.probe(), pid)
        except ImportError:
            raise
        except Exception as error:  # whatever the client raises means "not answering yet"
            return ServiceStatus(self.name, "running", f"not answering: {error!r}", pid)

    def healthy(self, timeout: float = 0) -> bool:
        """True once the server answers a client request, polling for up to timeout seconds."""
        deadline = time.monotonic() + timeout
        while True:
            if self.status().state == "healthy":
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.5)

    def start(self) -> ServiceStatus:
        """Install if needed, start unless already running, and wait until it answers.

        Never starts a second copy, and never touches a port held by someone else.
        """
        with self._exclusive():
            current = self.status()
            if current.state == "healthy":
                return current
            if current.state == "foreign":
                raise ServiceError(f"{self.name}: not started: {current.detail}")
            if current.state == "stopped":
                try:
                    self.install()
                    self.launch()
                except (CommandFailed, OSError) as error:
                    raise ServiceError(self._failure(f"failed to start: {error}")) from error
            return self._wait_until_healthy()

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """One start or stop of this service at a time, across processes: two test runs
        or experiments starting the same broker must not launch two copies."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "w") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            yield

    def _wait_until_healthy(self) -> ServiceStatus:
        deadline = time.monotonic() + self.start_timeout
        pid_grace = time.monotonic() + self.pid_file_within
        seen_running = False
        detail = "no pid file yet"
        while True:
            pid = self.pid()
            if pid is not None:
                seen_running = True
                try:
                    current = self._probe(pid)
                except ImportError as error:
                    raise ServiceError(f"{self.name}: its client library is missing, so its "
                                       f"health cannot be checked: {error}") from error
                if current.state == "healthy":
                    return current
                detail = current.detail
            elif seen_running or time.monotonic() > pid_grace:
                raise ServiceError(self._failure("exited during start-up"))
            if time.monotonic() > deadline:
                raise ServiceError(self._failure(
                    f"not answering after {self.start_timeout:.0f} s: {detail}"))
            time.sleep(0.5)

    def stop(self) -> None:
        """Shut our server down cleanly (killed if it takes too long). Fine when stopped."""
        with self._exclusive():
            pid = self.pid()
            if pid is not None:
                terminate(pid, self.command_marker, self.stop_signal, self.stop_timeout)
            self.after_stop()

    def after_stop(self) -> None:
        """Clean up what the server leaves behind once it is stopped."""
        self.pid_file.unlink(missing_ok=True)

    def restart(self) -> ServiceStatus:
        """Stop (cleanly), start, and wait until the server answers again."""
        self.stop()
        return self.start()

    def log_tail(self, lines: int = 20) -> str:
        return tail(self.log_file, lines)

    def _failure(self, reason: str) -> str:
        return (f"{self.name}: {reason}\n--- last lines of {self.log_file} ---\n"
                f"{self.log_tail(LOG_LINES_ON_FAILURE)}")
