"""Notifications (issue 12): the sink that writes what is owed to the outbox, and the loop that
delivers it, channel by channel, in order, paced, retried, grouped in mass outages."""
