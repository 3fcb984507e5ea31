"""The poller's settings, re-exported: they live in :mod:`recorder.config` (the ``[poller]`` table).

Kept so that code written against ``recorder.poller.settings`` keeps working while parallel
work merges; new code imports them from :mod:`recorder.config` (the configuration imports no
part it configures, so the settings types live there).
"""

from __future__ import annotations

from recorder.config import ACCOUNT_ENDPOINTS, DEFAULT_ENDPOINT_LIMITS, PollerSettings, RateLimit

__all__ = ["ACCOUNT_ENDPOINTS", "DEFAULT_ENDPOINT_LIMITS", "PollerSettings", "RateLimit"]
