# The project's own stack: the quickstart services, run from the repository root.
# `a3s up` here (or `just up`), then open http://web.localhost:7080

dev {
  proxy_port   = 7080
  stop_timeout = "3s"
}

service "migrate" {
  cmd     = "python3 migrate.py"
  dir     = "examples/quickstart"
  oneshot = true
}

service "api" {
  cmd        = "python3 api.py"
  dir        = "examples/quickstart"
  port       = 8700
  depends_on = ["migrate"]

  watch {
    paths = ["examples/quickstart/api.py"]
  }

  health {
    type     = "http"
    path     = "/health"
    interval = "2s"
  }
}

service "worker" {
  cmd        = "python3 worker.py"
  dir        = "examples/quickstart"
  depends_on = ["api"]

  watch {
    paths = ["examples/quickstart/worker.py"]
  }
}

service "web" {
  cmd        = "python3 web.py"
  dir        = "examples/quickstart"
  port       = 8701
  depends_on = ["api"]

  watch {
    paths = ["examples/quickstart/web.py"]
  }

  health {
    type = "http"
    path = "/health"
  }
}
