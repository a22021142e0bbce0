"""Adapters to the outside world (RabbitMQ, SQLite); each translates its library's errors."""
