"""Helpers shared by the tests and the benchmarks: servers (PostgreSQL, S3), generated dumps, a built
lake, a trained linear champion, the automation drill. Importable as a package, nothing more."""
