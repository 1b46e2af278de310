"""Kafka adapters: the consumer group stream, producers, the dead-letter topic."""
