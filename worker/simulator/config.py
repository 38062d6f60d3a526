"""How a simulator instance runs: where it listens, its credentials, its scenario."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from worker.simulator.scenario import Scenario

DEFAULT_AUTH_TOKEN = "sim-auth-token"
AUTH_TOKEN_ENV = "SENDQ_TWILIO_AUTH_TOKEN"


def _auth_token_from_env() -> str:
    # sendq signs and checks with the same variable, so both sides agree by default.
    return os.environ.get(AUTH_TOKEN_ENV) or DEFAULT_AUTH_TOKEN


@dataclass(slots=True)
class SimulatorConfig:
    host: str = "127.0.0.1"
    port: int = 8700
    auth_token: str = field(default_factory=_auth_token_from_env)
    # None accepts any account SID in the URL (with the right auth token).
    account_sid: str | None = None
    scenario: Scenario = field(default_factory=Scenario)
    receipt_workers: int = 32
    receipt_max_tries: int = 6
    receipt_retry_base_s: float = 1.0
    receipt_timeout_s: float = 5.0
