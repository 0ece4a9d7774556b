"""The control API on the supervisor's Unix socket: its server, its one client, the shapes both speak."""
