"""caterva2.broker: all the AMQP code (messages, topology, publisher, consumer, cat2bro)."""
