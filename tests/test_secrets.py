"""Issue 8, secrets stay secret: a password in a pair URL never leaves through an adapter.

Not in `describe()` (which goes into results.json and report.md), not in an error line, not on
a worker's command line (which every local user reads in `ps`, and which consumer.log copies).
None of these tests needs a broker: port 1 refuses at once.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from queuebench import adapters
from queuebench.adapters.base import Adapter
from queuebench.errors import QueuebenchError, UsageError

SECRET = "S3cret"
# Every pair whose URL carries a user and password to its broker, on a port nobody listens on.
PASSWORD_URLS = [
    f"rq+redis://:{SECRET}@127.0.0.1:1/0",
    f"huey+redis://:{SECRET}@127.0.0.1:1/0",
    f"dramatiq+redis://:{SECRET}@127.0.0.1:1/0",
    f"celery+redis://:{SECRET}@127.0.0.1:1/0",
    f"dramatiq+rabbitmq://alice:{SECRET}@127.0.0.1:1//",
    f"celery+rabbitmq://alice:{SECRET}@127.0.0.1:1//",
    f"kombu+redis://:{SECRET}@127.0.0.1:1/0",
    f"kombu+rabbitmq://alice:{SECRET}@127.0.0.1:1//",
    f"huey+postgres://u:{SECRET}@127.0.0.1:1/db",
    f"sqlalchemy+postgres://u:{SECRET}@127.0.0.1:1/db",
]


def pair_of(url: str) -> str:
    return url.partition("://")[0]


@pytest.fixture(params=PASSWORD_URLS, ids=pair_of)
def adapter(request: pytest.FixtureRequest) -> Iterator[Adapter]:
    made = adapters.create(request.param, queue="qbsecrets")
    yield made
    made.cleanup()


def test_every_pair_with_a_password_url_is_covered() -> None:
    """A pair whose default URL has a password is in PASSWORD_URLS, so a new one is not missed."""
    with_password = {scheme for scheme, entry in adapters.PAIRS.items()
                     if "@" in entry.default_url}
    assert with_password <= {pair_of(url) for url in PASSWORD_URLS}


def test_describe_masks_the_password(adapter: Adapter) -> None:
    """The URL every result carries (results.json, report.md) shows `:***@`, not the password."""
    described = adapter.describe()
    assert SECRET not in repr(described)
    assert ":***@127.0.0.1:1" in described["url"]
    assert adapter.url.startswith(described["pair"])  # the adapter itself still has it


def test_worker_command_line_has_no_password(adapter: Adapter) -> None:
    """`ps` shows every local user the worker's argv: the password goes by the environment."""
    assert SECRET not in " ".join(adapter.consumer_argv())


def test_unreachable_error_names_the_address_without_the_password(adapter: Adapter) -> None:
    """The error the CLI prints for a refused broker masks the password, still naming where."""
    with pytest.raises(QueuebenchError) as raised:
        adapter.check_reachable(timeout=2)
    message = str(raised.value)
    assert SECRET not in message
    assert "127.0.0.1" in message and adapter.scheme in message


def test_malformed_url_error_masks_the_password() -> None:
    with pytest.raises(UsageError) as raised:
        adapters.create(f"sqlalchemy+postgres://u:{SECRET}@127.0.0.1:port/db", queue="q")
    assert SECRET not in str(raised.value) and "u:***@127.0.0.1" in str(raised.value)


@pytest.mark.parametrize("url", [
    f"kafka-python+kafka://u:{SECRET}@127.0.0.1:1",
    f"confluent-kafka+kafka://u:{SECRET}@127.0.0.1:1",
    f"faust+kafka://u:{SECRET}@127.0.0.1:1",
    f"boto3+sqs://u:{SECRET}@127.0.0.1:1",
    f"celery+sqs://u:{SECRET}@127.0.0.1:1",
], ids=pair_of)
def test_pairs_without_credentials_in_their_url_refuse_them_masked(url: str) -> None:
    """Kafka and SQS URLs name servers only: credentials there are refused at once, masked,
    rather than printed later as part of an address."""
    with pytest.raises(UsageError) as raised:
        adapters.create(url, queue="q")
    assert SECRET not in str(raised.value) and "u:***@" in str(raised.value)


# Pairs whose worker unpickles what the broker holds: each offers a json-serializer variant.
UNPICKLING_PAIRS = {"rq+redis", "huey+sqlite", "huey+redis", "huey+postgres"}


@pytest.mark.parametrize("scheme", list(adapters.PAIRS))
def test_every_pair_says_what_its_worker_deserializes(scheme: str) -> None:
    """The serializer is declared for every pair; those that unpickle say who then runs code,
    and have a JSON variant with the same delivery settings otherwise."""
    adapter_class = adapters.adapter_class(adapters.PAIRS[scheme])
    declared = adapter_class.capabilities.serializer
    variant_names = [variant.name for variant in adapter_class.variants]
    if scheme in UNPICKLING_PAIRS:
        assert declared.startswith("pickle") and "runs code in the worker" in declared
        json_variant = adapter_class.find_variant("json-serializer")
        assert json_variant.settings["serializer"] == "json"
        default = adapter_class.find_variant("default")
        assert {**json_variant.settings, "serializer": "pickle"} == dict(default.settings)
        assert json_variant.redelivery_sec == default.redelivery_sec
    else:
        assert "pickle" not in declared.split(":")[0].split("(")[0].lower(), declared
        assert "json-serializer" not in variant_names
