"""SQS's SendMessageBatch behind the Producer contract, as AWS's own batching clients send it.

A batch goes when it holds 10 messages, when the next would take its bodies over the byte limit
(AWS counts all bodies of a SendMessageBatch together; ElasticMQ 1.7.1 checks their sum), or
when its first message has waited `max_open_sec`: without that bound, a message sent at 1 msg/s
waited 9 s for nine more.
"""

from __future__ import annotations

import base64
import threading
import time

from queuebench.adapters.base import Done
from queuebench.errors import QueuebenchError

DEFAULT_BATCH_OPEN_MS = 200  # QueueBufferConfig.MAX_BATCH_OPEN_MS_DEFAULT, AWS SDK for Java


class BatchEntryFailed(QueuebenchError):
    """SQS accepted a batch call but refused some of its entries (AWS reports them so)."""


class BatchingProducer:
    """Buffers up to 10 base64 bodies and sends them with one SendMessageBatch call, when ten
    wait, when the next would take the batch over its byte limit, or when the oldest has waited
    `max_open_sec` (a timer thread sends it then, as AWS's own batching clients do).

    A send can therefore fail at a later send() or at flush(), which raise; close() flushes.
    `send_async` buffers the same way (`holds_sends`): its `on_done` is told once the batch call
    was answered, that entry's outcome (the call's exception, or the entry's `Failed` report);
    those failures are not raised again.
    """

    holds_sends = True

    def __init__(self, client, queue_url: str, *, max_entries: int, max_batch_bytes: int,
                 max_open_sec: float) -> None:
        self.client = client
        self.queue_url = queue_url
        self.max_entries = max_entries
        self.max_batch_bytes = max_batch_bytes
        self.max_open_sec = max_open_sec
        self._bodies: list[str] = []
        self._told: list[Done | None] = []  # None: buffered by send(), which raises
        self._batch_bytes = 0
        self._opened = 0.0  # when the batch's first body came
        self._failure: BaseException | None = None  # of a send() the timer sent: raised next
        self._closed = False
        # One lock over the buffer and the batch call, so batches go in order, one at a time.
        self._lock = threading.Condition(threading.RLock())
        self._timer = threading.Thread(target=self._send_open_batches, daemon=True,
                                       name="sqs-batch-timer")
        self._timer.start()

    def send(self, payload: bytes, *, key: str | None = None) -> None:
        """Queue `payload`; `key` is unused: a standard queue has no groups or order."""
        self._add(payload, None)

    def send_async(self, payload: bytes, *, key: str | None = None, on_done: Done) -> None:
        """Queue `payload` as send() does; `on_done` is told when its batch was answered."""
        self._add(payload, on_done)

    def _add(self, payload: bytes, on_done: Done | None) -> None:
        body = base64.b64encode(payload).decode("ascii")
        with self._lock:
            if on_done is None:  # send_async raises nothing, as the Producer contract says
                self._raise_timers_failure()
            if self._bodies and self._batch_bytes + len(body) > self.max_batch_bytes:
                self.flush()  # alone over the limit, it still goes: the broker's error is the point
            if not self._bodies:
                self._opened = time.monotonic()
                self._lock.notify()
            self._bodies.append(body)
            self._told.append(on_done)
            self._batch_bytes += len(body)
            if len(self._bodies) >= self.max_entries:
                self.flush()

    def _send_open_batches(self) -> None:
        with self._lock:
            while not self._closed:
                if not self._bodies:
                    self._lock.wait()
                    continue
                left = self._opened + self.max_open_sec - time.monotonic()
                if left > 0:
                    self._lock.wait(left)
                    continue
                try:
                    self._send_batch()
                except Exception as exc:  # a send()'s failure, for its caller's next call
                    self._failure = exc

    def _raise_timers_failure(self) -> None:
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    def flush(self) -> None:
        with self._lock:
            self._raise_timers_failure()
            self._send_batch()

    def _send_batch(self) -> None:
        if not self._bodies:
            return
        # Taken off the buffer first: a batch that failed is reported once, not re-sent by close().
        bodies, told = self._bodies, self._told
        self._bodies, self._told, self._batch_bytes = [], [], 0
        try:
            response = self.client.send_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies)])
        except Exception as exc:
            for on_done in told:
                if on_done is not None:
                    on_done(exc)
            if None in told:
                raise
            return
        refused = {f["Id"]: f for f in response.get("Failed", [])}
        took = {s["Id"] for s in response.get("Successful", [])}
        for i, on_done in enumerate(told):
            if on_done is None:
                continue
            if str(i) in took:
                on_done(None)
            else:
                entry = refused.get(str(i), {"Code": "missing from its response"})
                on_done(BatchEntryFailed(
                    f"SendMessageBatch refused the message: {entry.get('Code')}: "
                    f"{entry.get('Message', '')}"))
        failed = [refused[str(i)] for i, on_done in enumerate(told)
                  if on_done is None and str(i) in refused]
        if failed:
            reasons = "; ".join(f"entry {f['Id']}: {f.get('Code')}: {f.get('Message', '')}"
                                for f in failed)
            raise BatchEntryFailed(f"SendMessageBatch refused {len(failed)} of {len(bodies)} "
                                   f"messages: {reasons}")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify()
        self._timer.join()
        try:
            self.flush()
        finally:
            self.client.close()
