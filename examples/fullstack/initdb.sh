#!/bin/sh
# The database cluster in ./data/pg, created once.
set -e
if [ -f data/pg/PG_VERSION ]; then
  echo "cluster already in data/pg"
  exit 0
fi
mkdir -p data
[ "$(id -u)" = 0 ] && chown postgres data
exec ./as-postgres.sh initdb -D data/pg -U postgres --auth=trust -E UTF8 --no-sync --no-instructions
