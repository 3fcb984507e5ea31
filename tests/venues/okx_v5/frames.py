"""Example frames and bodies copied verbatim from the OKX v5 PROTOCOL.md (never read at test time)."""

# §2.2 subscribe request, acks, errors
SUBSCRIBE_REQUEST = (
    '{"id": "1512", "op": "subscribe",\n "args": [{"channel": "tickers", "instId": "BTC-USDT"},\n'
    '          {"channel": "books", "instId": "ETH-USDT"}]}'
)
SUBSCRIBE_ACK = (
    '{"id": "1512", "event": "subscribe", "arg": {"channel": "tickers", "instId": "BTC-USDT"}, '
    '"connId": "accb8e21"}'
)
UNSUBSCRIBE_ACK = (
    '{"event": "unsubscribe", "arg": {"channel": "tickers", "instId": "BTC-USDT"}, "connId": "d0b44253"}'
)
ERROR_60012 = (
    '{"id": "1512", "event": "error", "code": "60012",\n'
    ' "msg": "Invalid request: {\\"op\\": \\"subscribe\\", \\"argss\\":[...]}", "connId": "a4d3ae55"}'
)
ERROR_60018 = (
    '{"event": "error", "code": "60018", "msg": "channel:ticker,instId:BTC-USDT doesn\'t exist", '
    '"connId": "a4d3ae55"}'
)
ERROR_60014 = '{"event": "error", "code": "60014", "msg": "Requests too frequent", "connId": "5f3f787a"}'

# §2.3 push envelope (data elided in the doc; here with an empty list)
# §2.5 login
LOGIN_REQUEST = (
    '{"op": "login", "args": [{"apiKey": "<key>", "passphrase": "<passphrase>",\n'
    '  "timestamp": "1538054050", "sign": "+LdIr8lkkvhr5hoA3g9TMC0+uQJ849ftAcocA/ouu4M="}]}'
)
LOGIN_OK = '{"event":"login","code":"0","msg":"","connId":"a4d3ae55"}'
LOGIN_FAILED = '{"event":"error","code":"60009","msg":"Login failed.","connId":"a4d3ae55"}'

# §2.6 notices and other events
NOTICE = (
    '{"event": "notice", "code": "64008", "msg": "The connection will soon be closed for a service upgrade. '
    'Please reconnect.", "connId": "a4d3ae55"}'
)
CHANNEL_CONN_COUNT = '{"event":"channel-conn-count","channel":"orders","connCount":"2","connId":"..."}'

# §3.1 tickers
TICKER = (
    '{"arg": {"channel": "tickers", "instId": "BTC-USDT"},\n'
    ' "data": [{"instType": "SPOT", "instId": "BTC-USDT", "last": "9999.99", "lastSz": "0.1",\n'
    '   "askPx": "9999.99", "askSz": "11", "bidPx": "8888.88", "bidSz": "5",\n'
    '   "open24h": "9000", "high24h": "10000", "low24h": "8888.88",\n'
    '   "volCcy24h": "2222", "vol24h": "2222", "sodUtc0": "2222", "sodUtc8": "2222",\n'
    '   "ts": "1597026383085"}]}'
)

# §3.2 books incremental
BOOKS_UPDATE = (
    '{"arg": {"channel": "books", "instId": "BTC-USDT"}, "action": "update",\n'
    ' "data": [{"asks": [["8476.98", "415", "0", "13"], ["8477", "0", "0", "0"]],\n'
    '           "bids": [["8476.97", "256", "0", "12"]],\n'
    '           "ts": "1597026383085", "checksum": 0, "prevSeqId": 123456, "seqId": 123457}]}'
)

# §3.3 trades
TRADES = (
    '{"arg": {"channel": "trades", "instId": "BTC-USDT"},\n'
    ' "data": [{"instId": "BTC-USDT", "tradeId": "130639474", "px": "42219.9", "sz": "0.12060306",\n'
    '           "side": "buy", "ts": "1630048897897", "count": "3", "source": "0", "seqId": 1234}]}'
)

# §3.4 candles
CANDLE = (
    '{"arg": {"channel": "candle1m", "instId": "BTC-USDT"},\n'
    ' "data": [["1597026383085", "8533.02", "8553.74", "8527.17", "8548.26",\n'
    '           "45247", "529.5858061", "5529.5858061", "0"]]}'
)

# §4.0 REST envelopes
REST_ERROR_51000 = '{"code":"51000","msg":"Parameter instId error","data":[]}'
REST_INVALID_SIGN = '{"msg":"Invalid Sign","code":"50113"}'
REST_TOO_MANY = '{"msg":"Too Many Requests","code":"50011"}'

# §4.2 REST books
REST_BOOKS = (
    '{"code": "0", "msg": "", "data": [{\n'
    '  "asks": [["41006.8", "0.60038921", "0", "1"]],\n'
    '  "bids": [["41006.3", "0.30178218", "0", "2"]],\n'
    '  "ts": "1629966436396", "seqId": 3235851742}]}'
)

# §4.6 server time
REST_TIME = '{"code":"0","msg":"","data":[{"ts":"1597026383085"}]}'

# §5.1 balance
REST_BALANCE = (
    '{"code": "0", "msg": "", "data": [{"uTime": "1705474164160", "totalEq": "55837.43", "upl": "",\n'
    '  "details": [{"ccy": "USDT", "eq": "4992.89", "cashBal": "4850.43", "availBal": "4834.31",\n'
    '    "frozenBal": "158.57", "ordFrozen": "0", "eqUsd": "4991.54", "upl": "0",\n'
    '    "uTime": "1705449605015"}]}]}'
)

# §9 worked checksum example
CHECKSUM_BOOK = {
    "bids": [["3366.1", "7.0", "0", "3"], ["3366", "0.0000001", "0", "1"], ["3365.5", "2", "0", "1"]],
    "asks": [["3366.8", "9", "0", "2"], ["3368", "0.5", "0", "1"]],
}
CHECKSUM_STRING_1 = "3366.1:7.0:3366.8:9:3366:0.0000001:3368:0.5:3365.5:2"
CHECKSUM_1 = -1667895914
CHECKSUM_UPDATE = {"bids": [["3366", "0", "0", "0"]], "asks": [["3367.2", "1.25", "0", "1"]]}
CHECKSUM_STRING_2 = "3366.1:7.0:3366.8:9:3365.5:2:3367.2:1.25:3368:0.5"
CHECKSUM_2 = -1828079305
CHECKSUM_WRONG = {"7.0->7": 725225026, "0.0000001->1e-07": -1791111323, "0.0000001->1E-7": 1510893281}
LEGACY_CHECKSUMS = {
    "3366.1:7:3366.8:9:3366:6:3368:8": -1881014294,
    "3366.1:7:3366.8:9:3368:8:3372:8": 831078360,
}

# §6 signing vectors: (secret, prehash, sign)
SECRET_A = "22582BD0CFF14C41EDBF1AB98506286D"
SIGNING_VECTORS = {
    "R1": (
        SECRET_A,
        "2020-12-08T09:08:57.715ZGET/api/v5/account/balance?ccy=BTC",
        "HiZhvSfMtWJA3uUIVXV3a/bSXNPCWvYFXoGCVS8V4zY=",
    ),
    "R2": (
        SECRET_A,
        "2020-12-08T09:08:57.715ZGET/api/v5/trade/orders-history?instType=SPOT&instId=BTC-USDT&limit=100",
        "JmohICXF2D245f/mWWxzsUEnwZrzHV0l48yR9QOjeKI=",
    ),
    "R3": (
        SECRET_A,
        '2020-12-08T09:08:57.715ZPOST/api/v5/account/set-leverage{"instId":"BTC-USDT","lever":"5","mgnMode":"isolated"}',
        "eCnnCgWLjlQ9XnpUkrcny3qNq3WW/81KNrDr/XR6Xv8=",
    ),
    "R4": (
        "chNOOS4KvNXR_Xq4k4c9qsfoKWvnDecLATCRlcBwyKDYnWgO",
        "2020-12-08T09:08:57.715ZGET/api/v5/account/balance",
        "PJ61e1nb2F2Qd7D8SPiaIcx2gjdELc+o0ygzre9z33k=",
    ),
    "WS": (SECRET_A, "1538054050GET/users/self/verify", "+LdIr8lkkvhr5hoA3g9TMC0+uQJ849ftAcocA/ouu4M="),
}
