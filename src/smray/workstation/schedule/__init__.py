"""Schedules: EventBridge's `rate(...)` and `cron(...)` expressions, for AWS rules and the local loop."""
