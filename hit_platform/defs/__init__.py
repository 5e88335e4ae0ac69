"""The asset graph, one module per concern; `hit_platform.definitions` assembles it."""
