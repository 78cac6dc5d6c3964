"""The Celery app that `celery -A queuebench.adapters.celery_worker worker` loads.

Built from the consumer process's configuration (see `queuebench.worker.handler`), so the
worker runs exactly the pair, queue and variant that the runner asked for.
"""

from queuebench import adapters
from queuebench.worker.handler import consumer_config

_config = consumer_config()
app = adapters.create(_config.pair_url, queue=_config.queue, variant=_config.variant).app
