"""SQAL data lifecycle: retention of samples and of the dedup ledger, compression and aggregate refresh policies."""
