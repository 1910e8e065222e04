"""The travel example: a second saga (flight, hotel, car) written with `sagaline.sdk` only,
each step calling a partner's API (`sagaline_travel.partner` stands in for them)."""
