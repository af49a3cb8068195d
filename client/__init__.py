"""tunduk.client: zeep clients for X-Road services behind a tunduk security server."""
