"""The outbox relay: reads a service's outbox, publishes it in order, marks what the broker
acknowledged."""
