"""The reference saga's four services (orchestrator, order, payment, stock), importable as
`sagaline.services`: sagaline/services is a link to this folder."""
