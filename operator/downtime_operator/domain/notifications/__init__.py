"""Notifications, pure: a channel's spec, what one notification says, its wire content, the
grouping of mass outages into digests, and the delivery policy (retry and pacing).

No I/O here: the notifier adapters send what ``render`` builds and ask ``delivery`` what to do
with each answer, so every decision is testable with plain values.
"""
