"""Every error a user can cause or meet, each rendered by the CLI as one line.

Exit codes: 2 for usage errors (the command line or a file it names is wrong), 1 for failures
(a broker that does not answer, a payload over a limit, a run that could not finish).
"""


class QueuebenchError(Exception):
    """A failure explained in one line; the CLI prints it and exits with `exit_code`."""

    exit_code = 1


class UsageError(QueuebenchError):
    """The user asked for something that cannot be: an unknown pair, a malformed URL, N <= 0."""

    exit_code = 2


class MissingExtra(QueuebenchError):
    """A pair's client library is not installed."""


class BrokerUnreachable(QueuebenchError):
    """The broker did not answer within the time allowed."""


class PayloadTooLarge(QueuebenchError):
    """A payload is over the pair's message size limit: the pair is a No Go for it."""


class ConsumerFailed(QueuebenchError):
    """The consumer process could not start, or died on its own."""
