"""Broker clients: aiokafka producers and consumers, Kafka security, what differs between
brokers."""
