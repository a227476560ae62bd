"""Ingestion: the `/ws/sensors/` WebSocket, its frame protocol (docs/protocol.md), storage and the fan-out publisher."""
