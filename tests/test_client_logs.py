"""A run keeps the client libraries' log lines in its folder's clients.log, passwords masked,
and out of its stderr."""

from __future__ import annotations

import subprocess
import sys

from queuebench.engine.client_logs import FILE_NAME

# A library's warning inside the run and after it, in a process of its own: pytest's logging
# capture would hide where Python sends it by default (stderr).
A_RUN = """
import logging, pathlib, sys
from queuebench.engine.client_logs import client_logs_in
with client_logs_in(pathlib.Path(sys.argv[1])):
    logging.getLogger("kafka.conn").warning(
        "Unable connect to node with id 1 at redis://user:s3cret@127.0.0.1:6379/0")
    logging.getLogger("kafka.conn").info("an INFO line, below the libraries' default")
logging.getLogger("kafka.conn").warning("after the run: on stderr again")
"""


def test_a_librarys_warning_goes_to_clients_log_masked_not_to_stderr(tmp_path):
    run = subprocess.run([sys.executable, "-c", A_RUN, str(tmp_path)], capture_output=True,
                         text=True, check=True)
    [line] = (tmp_path / FILE_NAME).read_text().splitlines()
    assert line.endswith("WARNING kafka.conn: Unable connect to node with id 1 at "
                         "redis://user:***@127.0.0.1:6379/0")
    assert run.stderr == "after the run: on stderr again\n"


def test_a_run_that_logs_nothing_has_no_clients_log(tmp_path):
    subprocess.run([sys.executable, "-c", A_RUN.split("    logging")[0] + "    pass\n",
                    str(tmp_path)], check=True)
    assert not (tmp_path / FILE_NAME).exists()
