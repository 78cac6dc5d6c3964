"""Heals what a dead run left broken: a broker down, a proxy cut or slowed, a worker frozen.

`python -m queuebench.faults.healer HEAL_FILE` runs beside a run that injects faults, its stdin a
pipe whose write end only the run holds (as engine/watchdog.py does for consumers). Before each
fault the run writes what would undo it to HEAL_FILE, and empties it once healed. When the run
ends, however it ends, the pipe reads EOF; whatever HEAL_FILE still orders is then undone:
every Toxiproxy proxy enabled and its toxics dropped, frozen processes continued, stopped
brokers started again.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from queuebench.faults.base import HealOrder


def heal(order: HealOrder) -> list[str]:
    """Undo everything `order` lists; what was done, one line each (errors included)."""
    from queuebench.faults.network import Toxiproxy
    from queuebench.services import durability, service

    done = []
    for pid in order.paused:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
            done.append(f"continued pid {pid}")
    if order.toxiproxy:
        try:
            Toxiproxy(order.toxiproxy).reset()
            done.append("reset every Toxiproxy proxy")
        except Exception as exc:  # the healer's last job: say it, do the rest
            done.append(f"could not reset Toxiproxy: {exc}")
    for name in order.services:
        try:
            done.append(f"started {name}: {service(name).start()}")
        except Exception as exc:
            done.append(f"could not start {name}: {exc}")
    for name in order.durability:  # once the broker is up again
        try:
            done.append(f"{name} back to durability {durability.reset(name).mode}")
        except Exception as exc:
            done.append(f"could not reset {name}'s durability: {exc}")
    return done


class Healer:
    """The run's side: starts the healer process, tells it what is in force, lets it go."""

    def __init__(self, heal_file: Path, log_path: Path,
                 standing: HealOrder | None = None) -> None:
        """`standing`: what the run set up for its whole length (a durability mode), undone by
        the healer unless the run undoes it itself and says so by emptying it."""
        self.heal_file = heal_file
        self.standing = standing or HealOrder()
        heal_file.parent.mkdir(parents=True, exist_ok=True)
        self.standing.save(heal_file)
        read_end, self._write_end = os.pipe()
        with open(log_path, "ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "queuebench.faults.healer", str(heal_file)],
                stdin=read_end, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        os.close(read_end)

    def expect(self, order: HealOrder) -> None:
        """What to undo should the run die from now on (until `healed`)."""
        replace(order, durability=self.standing.durability).save(self.heal_file)

    def healed(self) -> None:
        self.standing.save(self.heal_file)

    def close(self) -> None:
        """The run is over: the healer reads EOF, undoes what still stands (nothing, when the
        run undid it) and exits."""
        self.healed()
        os.close(self._write_end)
        self._process.wait(timeout=30)


def main(heal_file: str) -> None:
    while os.read(0, 1):  # EOF: the run is gone, or done
        pass
    for line in heal(HealOrder.load(Path(heal_file))):
        print(f"--- healer: {line}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
