"""One run of a stack, in the CLI's process and then the supervisor's: its options, where its files are
(discovery, `.a3s/`, lock, project claim), what is done before the event loop, the `Run` and its
phases, and `up -d`'s background supervisor."""
