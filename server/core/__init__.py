"""Message pipeline with no sockets, frameworks or databases: bytes and values in, values out."""
