"""tunduk security server: proxies, message pipeline, configuration, message log."""
