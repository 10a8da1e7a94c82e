"""Server-Sent Events: each event reaches the client as soon as it is made, and the worker
keeps serving everything else meanwhile.

    fastsock examples.sse:app
    curl -N localhost:8000/events
"""
import asyncio
import time

from fastsock import App, Response

app = App()
EVENT_STREAM = {"content_type": "text/event-stream", "headers": [("Cache-Control", "no-cache")]}


@app.get("/events")
async def events(req):
    """An async generator: it waits on the worker's asyncio loop between events."""
    count, every = int(req.query.get("n", "5")), float(req.query.get("every", "1"))

    async def stream():
        for i in range(count):
            yield f"id: {i}\ndata: tick {i}\n\n"
            await asyncio.sleep(every)
    return Response(stream(), **EVENT_STREAM)


@app.get("/events-blocking", threaded=True)
def events_blocking(req):
    """A plain generator that blocks between events: as the route is threaded, each event is
    pulled in the worker's thread pool, never on its loop."""
    count, every = int(req.query.get("n", "5")), float(req.query.get("every", "1"))

    def stream():
        for i in range(count):
            yield f"id: {i}\ndata: tick {i}\n\n"
            time.sleep(every)
    return Response(stream(), **EVENT_STREAM)
