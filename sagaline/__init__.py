"""sagaline: orchestrated sagas over Kafka with a transactional outbox in every service.

The product, in layers (the import contracts in pyproject.toml hold them): `domain` (pure
decisions), `telemetry`, `storage` and `kafka`, `delivery` (consumer, outbox relay, participant
glue), `http` and `settings`, `service` (one service's runtime), `registration` (what a service
declares and how it is found), `services` (the reference saga's four services). `cli` is the
`sagaline` command. The one-machine lab, not in the image (`sagaline[lab]`): `lab`, `measure`,
`simulation`, `traces`.
"""
