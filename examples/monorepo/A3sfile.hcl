# The a3s monorepo: eight services, each a crate under crates/.
# Commands are stand-ins (stub.py, a stdlib HTTP server) so the stack runs anywhere;
# in the real repository they are `cargo run -p a3s-<name>`.

dev {
  proxy_port   = 7080
  log_level    = "info"
  stop_timeout = "5s"
}

# Public entry point: routes to every backend.
service "gateway" {
  cmd        = "python3 ../../stub.py gateway"   # real: cargo run -p a3s-gateway
  dir        = "crates/gateway"
  port       = 18080
  env        = { RUST_LOG = "info", GATEWAY_WORKERS = 4 }
  depends_on = ["power", "search", "lane", "safeclaw", "os"]
  stop_timeout = "10s"

  watch {
    paths    = ["crates/gateway/src"]
    ignore   = ["*.lock"]
    debounce = "500ms"
  }

  health {
    type     = "http"
    path     = "/health"
    interval = "2s"
    timeout  = "1s"
    retries  = 3
  }
}

# Model inference; slow to warm up, so a patient probe.
service "power" {
  cmd        = "python3 ../../stub.py power"
  dir        = "crates/power"
  port       = 18081
  env        = { RUST_LOG = "info", POWER_MODEL = "tiny" }
  depends_on = ["event"]
  restart    = "always"

  watch {
    paths = ["crates/power/src"]
  }

  health {
    type     = "http"
    path     = "/health"
    interval = "5s"
    timeout  = "2s"
    retries  = 5
  }
}

# Full-text and vector search.
service "search" {
  cmd        = "python3 ../../stub.py search"
  dir        = "crates/search"
  port       = 18082
  depends_on = ["event"]

  watch {
    paths = ["crates/search/src"]
  }

  health {
    path = "/health"   # type defaults to http when a path is given
  }
}

# Event bus every backend publishes to; a TCP probe is enough.
service "event" {
  cmd         = "python3 ../../stub.py event"
  dir         = "crates/event"
  port        = 18083
  stop_signal = "SIGINT"

  watch {
    paths   = ["crates/event/src"]
    restart = false   # a restart drops subscribers: report changes only
  }
}

# Job lanes: queues with priorities, fed by the event bus.
service "lane" {
  cmd        = "python3 ../../stub.py lane"
  dir        = "crates/lane"
  port       = 18084
  depends_on = ["event"]

  watch {
    paths = ["crates/lane/src"]
  }

  health {
    type = "tcp"
  }
}

# Policy engine in front of tool calls.
service "safeclaw" {
  cmd        = "python3 ../../stub.py safeclaw"
  dir        = "crates/safeclaw"
  port       = 18085
  subdomain  = "safe"
  depends_on = ["power", "box"]

  watch {
    paths = ["crates/safeclaw/src"]
  }

  health {
    type = "http"
    path = "/health"
  }
}

# Sandboxed execution (micro-VMs in the real crate).
service "box" {
  cmd        = "python3 ../../stub.py box"
  dir        = "crates/box"
  port       = 18086
  env        = { BOX_MAX_SANDBOXES = 8 }

  watch {
    paths  = ["crates/box/src"]
    ignore = ["*.tmp"]
  }
}

# OS integration layer: needs the sandbox.
service "os" {
  cmd        = "python3 ../../stub.py os"
  dir        = "crates/os"
  port       = 18087
  depends_on = ["box"]

  watch {
    paths = ["crates/os/src"]
  }

  health {
    type     = "http"
    path     = "/health"
    interval = "3s"
  }
}
