"""`python -m a3s_dev.proxy --port N --fds A,B,C`: the shared proxy's process, started by
`proxy.proxy_process.start` on the sockets it listened on (docs/proxy.md)."""

from __future__ import annotations

import argparse
import sys

from a3s_dev.proxy.server import serve_shared

parser = argparse.ArgumentParser(prog="python -m a3s_dev.proxy")
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--fds", required=True, help="listening sockets: the TCP ones, then the Unix one")
args = parser.parse_args()
sys.exit(serve_shared(args.port, [int(fd) for fd in args.fds.split(",")]))
