# A three-service stack in plain Python: run `a3s up` here, then open http://web.localhost:7080

dev {
  proxy_port = 7080
}

# A task: runs once; the API starts only after it exits 0.
service "migrate" {
  cmd     = "python3 migrate.py"
  oneshot = true
}

service "api" {
  cmd        = "python3 api.py"
  port       = 8700
  depends_on = ["migrate"]

  watch {
    paths = ["api.py"]
  }

  health {
    type = "http"
    path = "/health"
  }
}

# Reaches the API through A3S_API_URL, which a3s sets from the api's port.
service "worker" {
  cmd        = "python3 worker.py"
  env        = { POLL_SECONDS = 3 }
  depends_on = ["api"]

  watch {
    paths = ["worker.py"]
  }
}

service "web" {
  cmd        = "python3 web.py"
  port       = 8701
  depends_on = ["api"]

  watch {
    paths = ["web.py"]
  }

  health {
    path = "/health"
  }
}
