"""`hit-platform`: the command line (main), the build of what is stale (build), the Dagster instance it uses."""
