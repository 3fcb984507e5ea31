"""The OKEx v1 protocol core: pure functions and classes, no I/O.

Signing (:mod:`.signing`), error codes (:mod:`.errors`), channel names
(:mod:`.channels`), the pairs table (:mod:`.pairs`), WebSocket frame decoding
(:mod:`.parse`), REST response parsing (:mod:`.rest`) and the order book
(:mod:`.book`). No asyncio, no sockets, no database anywhere in this package.
"""
