"""Topic preparation on a broker that has just started (no broker needed: the admin is a stub)."""

import pytest
from kafka.errors import CoordinatorNotAvailableError, KafkaError

from queuebench.adapters.kafka_common import recreate_topic


class StubAdmin:
    """Answers delete_groups with the given outcomes in turn; records what it was asked."""

    def __init__(self, *outcomes: str) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[str] = []

    def delete_groups(self, groups):
        self.calls.append("delete_groups")
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return {groups[0]: outcome}

    def delete_topics(self, topics, raise_errors):
        self.calls.append("delete_topics")

    def create_topics(self, topics, wait_for_metadata):
        self.calls.append("create_topics")


def test_retries_while_the_group_coordinator_loads():
    """A fresh broker's CoordinatorNotAvailable is waited out, then the topic is made anew."""
    admin = StubAdmin(CoordinatorNotAvailableError(), "NotCoordinatorError", "OK")
    recreate_topic(admin, "t", "g", timeout=5)
    assert admin.calls == ["delete_groups"] * 3 + ["delete_topics", "create_topics"]


def test_a_group_with_live_members_is_an_error_at_once():
    """A non-retriable answer (a consumer still in the group) fails with the group named."""
    admin = StubAdmin("NonEmptyGroupError")
    with pytest.raises(KafkaError, match="'g': NonEmptyGroupError"):
        recreate_topic(admin, "t", "g", timeout=5)
    assert admin.calls == ["delete_groups"]
