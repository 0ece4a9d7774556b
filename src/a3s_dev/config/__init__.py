"""The A3sfile: its model (frozen dataclasses), the HCL reader, validation and the dependency graph. Pure."""
