"""Provider backends. ``base`` is the interface; one module per provider."""
