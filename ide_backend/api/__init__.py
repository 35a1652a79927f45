"""The edge: thin routes over the workspace service, the websocket, authentication and the wire models.

`ide_backend.api.models` and `ide_backend.api.protocol` import nothing of the server beyond the domain types, so
the SDK can use them; the rest is imported from its modules (app.py does)."""
