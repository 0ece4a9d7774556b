dev {
  name = "shop"
}

service "db" {
  image          = "postgres:16"
  port           = 15432
  container_port = 5432
  proxy          = false
  env            = { POSTGRES_PASSWORD = "dev" }
  env_file       = "db.env"
  volumes        = ["pgdata:/var/lib/postgresql/data", "./init:/docker-entrypoint-initdb.d:ro", "/scratch"]
  stop_signal    = "SIGINT"
  stop_timeout   = "20s"
  health {
    command       = "pg_isready -q"
    in_container  = true
    interval      = "3s"
    start_timeout = "1m"
  }
}

service "migrate" {
  image      = "ghcr.io/shop/app:1"
  cmd        = "python manage.py migrate"
  oneshot    = true
  depends_on = { db = "healthy" }
}

service "api" {
  image          = "ghcr.io/shop/app:1"
  cmd            = "gunicorn app:app --bind 0.0.0.0:8000"
  port           = "auto"
  container_port = 8000
  depends_on     = { migrate = "completed", db = "healthy", cache = "started" }
  watch {
    paths = ["."]
  }
  health {
    path       = "/health"
    on_failure = "restart"
    retries    = 5
  }
}

service "cache" {
  image = "redis:7"
  port  = 16379
  proxy = false
}

service "tail" {
  image = "busybox:1.36"
  cmd   = "sh -c 'tail -f /dev/null'"
  restart = "never"
  health {
    pattern = "ready"
  }
}

service "web" {
  cmd        = "npm run dev"
  port       = 5173
  depends_on = ["api"]
}
