"""The lake: one place that opens DuckLake (extensions, attach, retries) and declares its tables."""
