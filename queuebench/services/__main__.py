"""Command line: python -m queuebench.services COMMAND [NAME ...].

Exit codes: 0 done, 1 a service failed (its log tail is printed), 2 bad input,
3 `status` found a service that is not healthy.
"""

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed

from queuebench.services import SERVICES, ServiceError, service
from queuebench.services.jvm import KAFKA_TOOLS
from queuebench.services.processes import CommandFailed

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_NOT_HEALTHY = 1, 2, 3

COMMANDS = {
    "up": "install and start services (default: all) in parallel; wait until each answers",
    "down": "stop services (default: all)",
    "status": "show whether services (default: all) answer a client request",
    "start": "like up, for the named services",
    "stop": "like down, for the named services",
    "restart": "stop, then start the named services",
    "logs": "print the last lines of a service's log",
    "kafka-perf": f"run one of Kafka's tools ({', '.join(KAFKA_TOOLS)}) with the given arguments",
}
NAMES_REQUIRED = {"start", "stop", "restart"}


class OneLineErrorParser(argparse.ArgumentParser):
    """Reports bad input as a single line, exit 2."""

    def error(self, message: str) -> None:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="python -m queuebench.services",
        description="Real brokers on 127.0.0.1 without Docker. Services: "
        + ", ".join(f"{spec.name} {spec.version} (port {spec.port})"
                    for spec in SERVICES.values()),
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineErrorParser)
    for command, help_text in COMMANDS.items():
        subparser = commands.add_parser(command, help=help_text, description=help_text)
        if command == "logs":
            subparser.add_argument("name")
            subparser.add_argument("-n", "--lines", type=int, default=50)
        elif command == "kafka-perf":
            subparser.add_argument("tool", choices=list(KAFKA_TOOLS))
            subparser.add_argument("args", nargs=argparse.REMAINDER,
                                   help="passed to the tool, e.g. --help")
        else:
            subparser.add_argument("names", nargs="+" if command in NAMES_REQUIRED else "*",
                                   metavar="NAME")
    return parser


def check_names(names: list[str]) -> list[str]:
    unknown = [name for name in names if name not in SERVICES]
    if unknown:
        print(f"unknown service {unknown[0]!r}; choose from {', '.join(SERVICES)}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)
    return names or list(SERVICES)


def for_each(names: list[str], action: Callable[[str], str]) -> int:
    """Run action on each service in parallel; print each outcome as it comes."""
    failed = []
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        futures = {pool.submit(action, name): name for name in names}
        for future in as_completed(futures):
            try:
                print(future.result(), flush=True)
            except ServiceError as error:
                failed.append(futures[future])
                print(f"FAILED {error}", file=sys.stderr, flush=True)
    if failed:
        print(f"failed: {', '.join(sorted(failed))}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def start(name: str) -> str:
    began = time.monotonic()
    status = service(name).start()
    return f"{status}  ({time.monotonic() - began:.1f} s)"


def stop(name: str) -> str:
    target = service(name)
    target.stop()
    return str(target.status())


def restart(name: str) -> str:
    began = time.monotonic()
    status = service(name).restart()
    return f"{status}  ({time.monotonic() - began:.1f} s)"


def show_status(names: list[str]) -> int:
    statuses = [service(name).status() for name in names]
    for status in statuses:
        print(status)
    return 0 if all(status.state == "healthy" for status in statuses) else EXIT_NOT_HEALTHY


def run_kafka_tool(tool: str, args: list[str]) -> None:
    command = service("kafka").tool_command(tool, args)
    os.execvp(command[0], command)  # the tool's output and exit code are the command's own


def main(argv: list[str] | None = None) -> int:
    # The client libraries used as health probes log every refused connection while a
    # server boots; the outcome is printed here instead.
    logging.basicConfig(level=logging.CRITICAL)
    arguments = build_parser().parse_args(argv)
    command = arguments.command
    try:
        if command == "logs":
            check_names([arguments.name])
            print(service(arguments.name).log_tail(arguments.lines))
            return 0
        if command == "kafka-perf":
            run_kafka_tool(arguments.tool, arguments.args)
        names = check_names(arguments.names)
        if command == "status":
            return show_status(names)
        action = {"up": start, "start": start, "down": stop, "stop": stop, "restart": restart}
        return for_each(names, action[command])
    except (ServiceError, CommandFailed) as error:
        print(f"FAILED {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
