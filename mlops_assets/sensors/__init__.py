"""Sensors: Kafka topics turned into asset runs."""
