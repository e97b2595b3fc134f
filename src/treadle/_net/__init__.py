"""Sockets, transports, servers, TLS and DNS on top of the kernel."""
