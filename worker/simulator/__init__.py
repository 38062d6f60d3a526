"""A provider-and-carrier simulator: five providers' APIs, carriers that filter, handsets
that count.

Each provider's dialect (``twilio_api``, ``telnyx_api``, ``bandwidth_api``,
``plivo_api``, ``vonage_api``) speaks that provider's send API, errors and
signed receipts; ``engine`` decides each text's fate without knowing which
provider it came through; ``signing`` holds each provider's signatures and
credentials, the simulator's own (it imports nothing of worker/providers, so
it checks sendq's adapters instead of echoing them). See ``carriers``
(which number is on which carrier), ``scenario`` (the scenario file format),
``app`` (the routes), ``gate`` (provider ports that can refuse connections),
``config`` (credentials, shared with sendq through the environment) and
``server`` (running it).
"""
