"""Wire-level senders for the notification channels: one request, one ``SendOutcome``.

Each sender makes exactly one attempt and says what happened; retries, pacing, ordering and
the outbox belong to the delivery loop, which judges an outcome with ``SendOutcome.retryable``
and its ``status``/``retry_after``.
"""
