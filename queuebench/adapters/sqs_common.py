"""What every pair on SQS shares: where a pair URL points, a boto3 client that no file on the
machine changes, SQS's limits, and a queue that is gone.

ElasticMQ keeps its queues in memory: a restart loses them, and every message in them, so a
queue that no longer exists is a backlog of nothing, said so, rather than an error.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import ClientError

from queuebench.adapters.base import Backlog
from queuebench.errors import UsageError
from queuebench.redact import redact

MAX_MESSAGE_BYTES = 1_048_576  # AWS since 2025 (262,144 before); ElasticMQ strict since 1.7.0
MAX_BATCH_ENTRIES = 10
BOTOCORE_RETRIES = {"mode": "standard", "total_max_attempts": 3}  # botocore 1.44's defaults
DEFAULT_CONNECT_TIMEOUT_SEC = 5.0
DEFAULT_READ_TIMEOUT_SEC = 30.0
LOCAL_REGION = "us-east-1"
LOCAL_CREDENTIALS = {"aws_access_key_id": "queuebench", "aws_secret_access_key": "queuebench"}
AWS_HOST = re.compile(r"sqs\.([a-z0-9-]+)\.amazonaws\.com")
QUEUE_GONE_CODES = {"QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue"}
QUEUE_GONE = Backlog(waiting=0, detail="the queue no longer exists: the broker lost it, with "
                                       "every message in it")


def queue_gone(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in QUEUE_GONE_CODES


def delete_queue_named(client, name: str) -> None:
    """Delete the queue; one already gone (an in-memory ElasticMQ restarted) is as asked."""
    try:
        client.delete_queue(QueueUrl=client.get_queue_url(QueueName=name)["QueueUrl"])
    except ClientError as exc:
        if not queue_gone(exc):
            raise


@dataclass(frozen=True)
class Endpoint:
    url: str
    region: str
    aws: bool


def endpoint_for(pair_url: str) -> Endpoint:
    """`boto3+sqs://host:port` -> plain http (ElasticMQ); `sqs.<region>.amazonaws.com` -> https."""
    address = urlsplit(pair_url)
    if not address.hostname:
        raise UsageError(f"{redact(pair_url)!r}: expected boto3+sqs://HOST:PORT, "
                         "e.g. boto3+sqs://127.0.0.1:9324 or boto3+sqs://sqs.eu-west-1.amazonaws.com")
    if "@" in address.netloc:  # else the endpoint, printed in errors, would carry a password
        raise UsageError(f"{redact(pair_url)!r}: credentials do not go in the URL; boto3 takes "
                         "them from its usual chain (environment, ~/.aws)")
    aws = AWS_HOST.fullmatch(address.hostname)
    if aws:
        return Endpoint(f"https://{address.netloc}", aws.group(1), aws=True)
    return Endpoint(f"http://{address.netloc}", LOCAL_REGION, aws=False)


def sqs_client(endpoint: Endpoint, *, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_SEC,
               read_timeout: float = DEFAULT_READ_TIMEOUT_SEC,
               total_max_attempts: int = BOTOCORE_RETRIES["total_max_attempts"]):
    config = Config(connect_timeout=connect_timeout, read_timeout=read_timeout,
                    retries={**BOTOCORE_RETRIES, "total_max_attempts": total_max_attempts})
    if endpoint.aws:
        return boto3.session.Session().client("sqs", endpoint_url=endpoint.url,
                                              region_name=endpoint.region, config=config)
    # No config or credentials file, no profile from the environment: a user's ~/.aws (a broken
    # file, a missing AWS_PROFILE, an adaptive retry mode) cannot change or break a local run.
    ignore_files = botocore.session.Session(session_vars={
        "profile": (None, None, None, None),
        "config_file": (None, None, os.devnull, None),
        "credentials_file": (None, None, os.devnull, None),
    })
    return boto3.session.Session(botocore_session=ignore_files).client(
        "sqs", endpoint_url=endpoint.url, region_name=endpoint.region, config=config,
        **LOCAL_CREDENTIALS)
