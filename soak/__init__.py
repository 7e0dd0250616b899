"""`make soak`: a long mixed run against the whole stack, with a report (requests, errors by
kind, RSS over time per process and its trend, p99 over time)."""
