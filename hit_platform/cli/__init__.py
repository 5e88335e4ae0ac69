"""`hit-platform`: the command line. main.py wires the parser; the commands live by what they do: demo.py
(generate, feed, demo), pipeline.py (ingest, build, status, sql), serving.py (serve, stop, audit),
operations.py (alerts, monitor, rollback, rebuild). build.py builds what the daemon's rules ask for, rebuild.py and rollback.py
carry those two commands, dagster_instance.py is the Dagster instance they use."""
