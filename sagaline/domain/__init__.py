"""Pure domain: the Saga definition, messages, the envelope, the orchestrator's engine and the
initiator's and participants' decisions. Imports no SQLAlchemy, aiokafka or FastAPI (an import
contract checked by `make test`), so the simulation drives the very code the services run."""
