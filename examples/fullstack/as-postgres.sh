#!/bin/sh
# Postgres refuses to run as root. Run as root (as CI does), drop to the postgres user first;
# setpriv execs the server directly, so a3s's stop signal reaches it (runuser would SIGKILL
# it 2 s after SIGTERM and force crash recovery on the next start).
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$PGBIN" ] && PATH="$PGBIN:$PATH"
if [ "$(id -u)" = 0 ]; then
  exec setpriv --reuid=postgres --regid=postgres --init-groups -- env PATH="$PATH" "$@"
fi
exec "$@"
