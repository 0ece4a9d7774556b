"""What the operating system says and does, stdlib only: every /proc reader, loopback ports,
private files and sockets, per-user places. Below everything but `errors`."""
