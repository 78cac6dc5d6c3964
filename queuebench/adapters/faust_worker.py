"""The module the faust worker imports: `faust -A queuebench.adapters.faust_worker worker`.

The app and its agent are built from the consumer's configuration, which the runner passes in
the environment (see `queuebench.worker.handler`).
"""

from queuebench.adapters.faust import worker_app
from queuebench.worker.handler import consumer_config

app = worker_app(consumer_config())
