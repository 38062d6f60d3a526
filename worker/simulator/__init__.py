"""A provider-and-carrier simulator: five providers' APIs, carriers that filter, handsets
that count.

Each provider's dialect (``twilio_api``, ``telnyx_api``, ``bandwidth_api``,
``plivo_api``, ``vonage_api``) speaks that provider's send API, errors and
signed receipts; ``engine`` decides each text's fate without knowing which
provider it came through; ``signing`` holds each provider's signatures and
credentials, the simulator's own (it imports nothing of worker/providers, so
it checks sendq's adapters instead of echoing them). See ``carriers``
(which number is on which carrier), ``scenario`` (the scenario file format;
``rules`` its rules, quiet filtering too: silent drops, stopped receipts,
lognormal receipt delays, cut deliveries; ``draws`` the stable per-text
numbers they decide by), ``carrier_log`` and ``carrier_routes`` (per carrier,
what became of each accepted text and when: ``/sim/carriers``),
``app`` (the routes), ``gate`` (provider ports that can refuse connections),
``config`` (credentials, shared with sendq through the environment) and
``server`` (running it).

Handsets reply: ``replies`` (the scenario's ``[replies]``: who answers, what,
when), ``inbound`` (each provider's signed inbound-text request), ``handsets``
(the replies posted, how sendq's webhook took them, and the opt-out violations
they show), ``reply_routes`` (``/sim/replies``, ``/sim/handsets``) and
``client`` (a Python client for those routes); ``signing_settings`` is the
scenario's ``[signing]`` (Twilio's SharedKey).
"""
