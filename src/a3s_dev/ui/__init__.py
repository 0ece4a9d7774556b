"""`a3s ui` (SPEC §12): a terminal UI on Textual, a client of the supervisor's control API like
`a3s status` and the dashboard. Textual is imported here only, by this command."""
