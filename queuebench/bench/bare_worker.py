"""The module the libraries' own workers import in the overhead benchmark, in place of the pair's
worker module: the same broker and settings, with a no-op task that only counts its calls.

`huey_consumer queuebench.bench.bare_worker.huey`; `dramatiq queuebench.bench.bare_worker:broker`.
Its configuration comes in the environment (bare.BARE_ENV), set by bare.consume_task.
"""

import json
import os

from queuebench.adapters import create
from queuebench.bench.bare import BARE_ENV, CallClock, noop_dramatiq, noop_huey

_config = json.loads(os.environ[BARE_ENV])
_adapter = create(_config["pair_url"], queue=_config["queue"], variant=_config["variant"])
_clock = CallClock(_config["messages"], _config["done_path"])
if _adapter.library == "huey":
    huey, noop_task = noop_huey(_adapter, _clock.tick)
else:
    broker, noop_actor = noop_dramatiq(_adapter, _clock.tick)
