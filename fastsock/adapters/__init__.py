"""The kinds of application a worker serves, under one protocol (protocol.ServableApp): a
fastsock App as it is, WSGI and ASGI apps through their adapters (wsgi, asgi), which share
common's helpers and label their routes with routelabels. kinds tells which an app is."""
