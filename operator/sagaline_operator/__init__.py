"""The Saga operator: a `Saga` resource becomes its KafkaTopics and its services (Kopf)."""
