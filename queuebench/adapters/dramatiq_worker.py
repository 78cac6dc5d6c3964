"""The module the `dramatiq` command imports: `dramatiq queuebench.adapters.dramatiq_worker:broker`.

The broker (with the variant's settings) and the actor are built from the consumer's
configuration, which the runner passes in the environment (see `queuebench.worker.handler`).
The broker is named on the command line rather than set as dramatiq's global one.
"""

from queuebench.adapters import create
from queuebench.adapters.dramatiq import declare_actor
from queuebench.worker.handler import consumer_config

_adapter = create(consumer_config().pair_url, queue=consumer_config().queue,
                  variant=consumer_config().variant)
broker = _adapter.build_broker()
message_actor = declare_actor(broker, consumer_config().queue, _adapter.settings)
