"""The ledger's store: APSW schema and migrations, the event store and its group-commit writer, blobs,
commands (decide steps run inside the write), settings, backup, integrity and retention."""
