"""Both proxies of a security server on one asyncio event loop per process.

Why one thread: a request is short CPU work between waits on sockets, and threads
taking the GIL from one another cost more than that work (docs/performance.md).  The
loop runs the HTTP edges, the sans-I/O core and the message-log commits; only what
blocks by nature (hosted spyne services) goes to an executor.
"""
