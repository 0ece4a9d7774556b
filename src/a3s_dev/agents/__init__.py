"""What coding agents use: `a3s mcp`, a Model Context Protocol server (SPEC §11), and the tools
it names (plain functions over the control API, testable without the SDK)."""
