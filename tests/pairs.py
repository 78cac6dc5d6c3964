"""Every registered pair as a pytest parameter, marked with the broker service it needs."""

import pytest

from queuebench import adapters

SERVICE_OF_BROKER = {"sqlite": None, "postgres": "postgres", "redis": "redis",
                     "rabbitmq": "rabbitmq", "kafka": "kafka", "sqs": "elasticmq"}


def pair_params(schemes=None) -> list:
    params = []
    for scheme in schemes or adapters.PAIRS:
        service = SERVICE_OF_BROKER[scheme.split("+", 1)[1]]
        marks = [pytest.mark.broker(service)] if service else []
        params.append(pytest.param(scheme, marks=marks, id=scheme))
    return params
