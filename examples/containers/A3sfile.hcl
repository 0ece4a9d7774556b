# Infrastructure in containers, the app as a host process with its reloader (SPEC §14).
#
#   pip install -r requirements.txt   # psycopg 3 and redis-py, for the app
#   a3s up                            # then open http://web.containers.localhost:7080
#
# Needs podman or docker; the images come from Docker Hub on the first `up`. Each worktree
# gets its own data: the volume is named <project>-pgdata. `a3s down` removes the containers
# (never the volume); `podman volume rm containers-pgdata` starts afresh.

dev {
  name = "containers"
}

service "postgres" {
  image          = "docker.io/library/postgres:16"
  port           = "auto"    # published on 127.0.0.1 only
  container_port = 5432
  proxy          = false     # not HTTP: never routed
  env            = { POSTGRES_PASSWORD = "dev", POSTGRES_DB = "app" }
  volumes        = ["pgdata:/var/lib/postgresql/data", "./initdb:/docker-entrypoint-initdb.d:ro"]
  stop_signal    = "SIGINT"  # postgres's fast shutdown
  health {
    # inside the container, over TCP: the image's first-run server listens on its socket only
    command       = "pg_isready -q -h 127.0.0.1 -U postgres -d app"
    in_container  = true
    start_timeout = "2m"
  }
}

service "redis" {
  image          = "docker.io/library/redis:7"
  cmd            = "redis-server --save '' --appendonly no"
  port           = "auto"
  container_port = 6379
  proxy          = false
  health {
    command      = "redis-cli ping"
    in_container = true
  }
}

service "web" {
  cmd        = "exec python3 app.py"
  port       = "auto"
  depends_on = { postgres = "healthy", redis = "healthy" }
  watch {
    paths = ["app.py"]
  }
  health {
    path = "/health"
  }
}
