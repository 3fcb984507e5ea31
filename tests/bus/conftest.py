from tests.bus.helpers import bus, private_nats  # noqa: F401 - fixtures
