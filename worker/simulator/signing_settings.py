"""A scenario's ``[signing]`` table: how the simulated providers sign their webhooks.

Today only Twilio has a choice. By default it signs with the account's auth
token (HMAC-SHA1); an account whose Webhooks configuration API names a
SharedKey signs with that key's secret instead, HMAC-SHA1 or HMAC-SHA256, and
says which in ``X-Twilio-Webhooks-Signature-Settings: key=<id>,algorithm=<alg>``
(twilio.com/docs/usage/webhooks/webhook-shared-keys)::

    [signing.twilio]
    key_id = "webhooks_sharedkey_sim1"
    secret = "s3cret"
    algorithm = "HMAC_SHA256"     # or "HMAC_SHA1"

It applies to everything the simulated Twilio posts: status callbacks and
inbound texts alike. Posting a scenario with another key is a key rotation.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

TwilioAlgorithm = Literal["HMAC_SHA1", "HMAC_SHA256"]


class TwilioSharedKey(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Twilio's SharedKey id, named in the settings header.
    key_id: str = Field(min_length=1, max_length=200, pattern=r"^[^,=\s]+$")
    # The secret Twilio returned when the key was made: what signs.
    secret: str = Field(min_length=1)
    algorithm: TwilioAlgorithm = "HMAC_SHA256"


class SigningSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # None: the auth token signs, HMAC-SHA1, with no settings header (Twilio's default).
    twilio: TwilioSharedKey | None = None
