"""okex-recorder: a market-data recorder and analytics pipeline for the OKEx v1 spot API.

Data flows one way: socket -> frame decode (``recorder.venues.okex_v1``) -> typed records
(``recorder.records``) -> order book -> snapshots -> writer (``recorder.storage``)
-> SQL + Parquet -> ``analysis``.
"""

__version__ = "0.1.0"
