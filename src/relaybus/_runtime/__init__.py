"""The worker runtime: small services sharing one lifecycle (see docs/architecture.md)."""
