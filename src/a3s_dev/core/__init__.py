"""The supervisor and what it is made of: states, events, restart policy, processes, probes, logs."""
