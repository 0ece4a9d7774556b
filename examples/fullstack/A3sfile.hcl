# A real stack: Postgres, Redis, a migration, a web app reading and writing both, a worker.
#
#   pip install -r requirements.txt   # psycopg 3 and redis-py, this example's own
#   a3s up                            # then open http://web.fullstack.localhost:7080
#
# Needs Postgres and Redis installed (Debian: apt-get install postgresql redis-server;
# macOS: brew install postgresql redis). Data lives in ./data; `rm -rf data` starts afresh.

dev {
  name = "fullstack"
}

# Creates the cluster once (a task: the database starts only after it exited 0).
service "initdb" {
  cmd     = "exec ./initdb.sh"
  oneshot = true
}

service "postgres" {
  cmd         = "exec ./as-postgres.sh postgres -D data/pg -p $PORT -k \"$PWD/data\" -c listen_addresses=127.0.0.1"
  port        = 55432
  proxy       = false     # not HTTP: never routed, no http:// URL
  stop_signal = "SIGINT"  # postgres's fast shutdown: the next start needs no recovery
  depends_on  = { initdb = "completed" }
  health {
    command       = "pg_isready -q -h 127.0.0.1 -p $PORT -U postgres"  # a port that accepts is not a database that answers
    start_timeout = "2m"
  }
}

service "redis" {
  cmd   = "exec redis-server --port $PORT --bind 127.0.0.1 --save '' --appendonly no"
  port  = 56379
  proxy = false
  health {
    command = "redis-cli -p $PORT ping"
  }
}

# Applies the schema once per database; each run is counted, and shown by the web page.
service "migrate" {
  cmd        = "exec psql -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p \"$${A3S_POSTGRES_URL##*:}\" -U postgres -d postgres -f migrate.sql"
  oneshot    = true
  depends_on = { postgres = "healthy" }
}

service "web" {
  cmd        = "exec python3 app.py"
  port       = 58080
  depends_on = { migrate = "completed", postgres = "healthy", redis = "healthy" }
  health {
    path = "/health"
  }
}

service "worker" {
  cmd        = "exec python3 worker.py"
  depends_on = { migrate = "completed", redis = "healthy" }
}
