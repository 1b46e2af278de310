"""Local development services (a real Kafka broker) for tests and the command line."""
