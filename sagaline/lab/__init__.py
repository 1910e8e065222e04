"""The one-machine lab (`pip install sagaline[lab]`): a whole stack on this machine, its load,
scenario and invariants, and the launchers of the embedded broker, Apache Kafka and PostgreSQL.
Not in the image."""
