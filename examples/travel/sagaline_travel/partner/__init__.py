"""A stand-in partner API (an airline, a hotel, a car rental) for the travel example: a real
HTTP server that books once per idempotency key, counts what it absorbed, and can be told to
refuse or to answer late. `python -m sagaline_travel.partner --help`."""
