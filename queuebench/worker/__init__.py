"""What runs inside a consumer process: the envelope, the receipt writer and the handler.

Adapters and the libraries' workers import this package, never the engine: a worker process
loads only what it needs to receive, work and write its receipt.
"""
