"""The module `huey_consumer` imports: `huey_consumer queuebench.adapters.huey_worker.huey`.

The huey instance and its task (with the variant's serializer) are built from the consumer's
configuration, which the runner passes in the environment (see `queuebench.worker.handler`).
"""

from queuebench.adapters import create
from queuebench.worker.handler import consumer_config

_adapter = create(consumer_config().pair_url, queue=consumer_config().queue,
                  variant=consumer_config().variant)
huey, message_task = _adapter.build_huey()  # the variant's serializer, as on the producer
