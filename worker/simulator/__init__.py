"""A provider-and-carrier simulator: Twilio's API, carriers that filter, handsets that count.

See ``carriers`` (which number is on which carrier), ``scenario`` (the
scenario file format), ``app`` (the routes) and ``server`` (running it).
"""
