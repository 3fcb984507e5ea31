"""Venue packages: one sans-I/O protocol core per exchange API.

Each subpackage (``okx_v5`` today; ``okex_v1`` once issue 14 moves the v1 core
here) holds the venue's wire schemas, parsing into typed records, channel
naming, error codes, signing, REST request building and a sans-I/O session.
Venue packages import nothing from ``recorder.collector``, ``recorder.poller``
or ``recorder.storage``.
"""
