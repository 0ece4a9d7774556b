"""The seam between a supervisor and the shared proxy: the registration protocol (pure), the
addresses both sides agree on (pure), finding/starting/stopping the proxy, and the supervisor's side
of the link (join). The proxy engine (`proxy/`) imports the protocol; nothing here imports the engine."""
