"""Each broker's own ceiling: what its own load tool moves at the sizes the pairs send.

    python -m queuebench.ceilings [--broker kafka|redis|rabbitmq|postgres|sqs ...]
                                  [--sizes BYTES ...] [--messages N]

runs Kafka's ProducerPerformance / ConsumerPerformance, RabbitMQ's PerfTest, redis-benchmark,
and a bare psycopg or boto3 loop for PostgreSQL and SQS, each tuned as its documentation advises
(the module of each broker says how), and writes `reports/CEILINGS/ceilings.json` and
`reports/CEILINGS.md`. A report shows a pair's throughput as a share of its broker's ceiling:

    from queuebench.ceilings import ceiling_at
    ceiling = ceiling_at("kafka", 17_557)   # None when not measured near that size
    share = pair_mb_s / ceiling.consume_mb_s
"""

from queuebench.ceilings.ceiling import Ceiling, ceiling_at, load_ceilings, nearest, snapshot

__all__ = ["Ceiling", "ceiling_at", "load_ceilings", "nearest", "snapshot"]
