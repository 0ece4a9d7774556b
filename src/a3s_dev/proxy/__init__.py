"""The reverse proxy: pure routing and header rules, the upstream pool, the direct path and the aiohttp server."""
