"""The event-loop engine: both proxies of a security server on one asyncio loop.

Why: on cheroot every request holds a thread, and each hand-over of the GIL between
busy threads costs tens of microseconds on a small VM (docs/performance.md).  Here one
thread per process runs the HTTP edges and the sans-I/O core; blocking work (message-log
commits, metaservices, in-process services) stays on other threads.
"""
