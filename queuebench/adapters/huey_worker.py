"""The module `huey_consumer` imports: `huey_consumer queuebench.adapters.huey_worker.huey`.

The huey instance and its task are built from the consumer's configuration, which the runner
passes in the environment (see `queuebench.experiments.handler`).
"""

from queuebench.adapters.huey import huey_for
from queuebench.experiments.handler import consumer_config

huey, message_task = huey_for(consumer_config().pair_url, consumer_config().queue)
