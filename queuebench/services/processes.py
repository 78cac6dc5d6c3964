"""Small process and port helpers shared by the services."""

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from queuebench.services.catalog import HOST


class CommandFailed(RuntimeError):
    """A helper command (apt-get, mvn, go, initdb ...) failed; the message holds its output."""


def run(command: Sequence[str], env: Mapping[str, str] | None = None, cwd: Path | None = None,
        timeout: float = 1200) -> str:
    """Run a command to completion and return its output; raise CommandFailed with the output."""
    result = subprocess.run(
        list(command), env=env, cwd=cwd, timeout=timeout, text=True,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    if result.returncode != 0:
        last_lines = "\n".join(result.stdout.splitlines()[-30:])
        raise CommandFailed(f"{' '.join(command)} exited {result.returncode}:\n{last_lines}")
    return result.stdout


def spawn_detached(command: Sequence[str], log_file: Path, pid_file: Path | None,
                   env: Mapping[str, str] | None = None, cwd: Path | None = None) -> None:
    """Start a long-running server that outlives this Python process.

    `setsid --fork` makes the server a child of init in its own session, so neither
    Ctrl-C here nor our exit reaches it. The shell writes its own pid (which `exec` then
    hands to the server) to pid_file; pass None when the server writes its own pid file.
    """
    shell = 'echo $$ > "$0" && exec "$@"' if pid_file else 'exec "$@"'
    launcher = ["setsid", "--fork", "sh", "-c", shell, str(pid_file or "sh"), *command]
    if pid_file:
        pid_file.unlink(missing_ok=True)
    with open(log_file, "ab") as log:
        subprocess.run(launcher, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log,
                       stderr=subprocess.STDOUT, check=True)
    if pid_file:
        wait_for(pid_file.exists, timeout=10, interval=0.02)


def read_pid(pid_file: Path) -> int | None:
    """The first number in a pid file (postmaster.pid has more lines), or None."""
    try:
        first_line = pid_file.read_text().split("\n", 1)[0].strip()
    except FileNotFoundError:
        return None
    return int(first_line) if first_line.isdigit() else None


def pid_alive(pid: int, command_marker: str) -> bool:
    """True if pid runs and its command line contains command_marker.

    Zombies count as dead: on these machines pid 1 does not reap orphans, so a server
    that exited can stay a zombie forever. The marker guards against a reused pid.
    """
    proc = Path("/proc") / str(pid)
    try:
        stat = (proc / "stat").read_text()
        command_line = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X") and command_marker in command_line


def send_signal(pid: int, signal_number: int) -> None:
    """Signal a process that may have exited in the meantime."""
    try:
        os.kill(pid, signal_number)
    except ProcessLookupError:
        return


def terminate(pid: int, command_marker: str, stop_signal: int, timeout: float) -> None:
    """Ask a server to stop with stop_signal; SIGKILL it if it is still there after timeout."""
    send_signal(pid, stop_signal)
    if not wait_for(lambda: not pid_alive(pid, command_marker), timeout=timeout):
        send_signal(pid, signal.SIGKILL)
        wait_for(lambda: not pid_alive(pid, command_marker), timeout=10)


def wait_for(condition: Callable[[], bool], timeout: float, interval: float = 0.25) -> bool:
    """Poll condition until it holds (True) or timeout seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def port_open(port: int, host: str = HOST) -> bool:
    """Something accepts TCP connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        return probe.connect_ex((host, port)) == 0


def port_owner(port: int) -> str:
    """Who listens on a TCP port, e.g. 'pid 123 (redis-server)', as far as `ss` can tell."""
    if shutil.which("ss") is None:
        return "an unknown process"
    output = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], text=True,
                            capture_output=True).stdout
    match = re.search(r'users:\(\("([^"]+)",pid=(\d+)', output)
    return f"pid {match[2]} ({match[1]})" if match else "an unknown process"


def tail(path: Path, lines: int) -> str:
    """The last lines of a text file, or '' if it does not exist."""
    try:
        with open(path, "rb") as file:
            file.seek(0, os.SEEK_END)
            size = file.tell()
            file.seek(max(0, size - 200 * lines - 4096))
            text = file.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
