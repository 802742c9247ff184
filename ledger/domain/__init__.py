"""The ledger's domain: events, the job/node/token state machines, user tallies, quotas, shares,
errors and the clock. Pure: no I/O, and nothing of ledger.store.store."""
