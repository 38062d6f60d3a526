"""sendq: a durable send queue for peer-to-peer texting."""

__version__ = "0.1.0"
