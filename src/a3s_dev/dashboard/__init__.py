"""The dashboard at a3s.localhost, served by the shared proxy: its handlers and /api/, the
server-rendered board and graph (pure), and the static script and style."""
