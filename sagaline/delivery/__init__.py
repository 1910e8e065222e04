"""The delivery core: consumer (batch -> inbox -> handler -> outbox -> commit), dead letters, the
outbox relay and the participant glue. See docs/design.md, "Delivery rules"."""
