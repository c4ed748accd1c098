"""The SSE leg: a job's snapshots to the browsers that follow it, one module a job.

    _routes      GET /api/jobs/{jobId}/progress/stream and GET /api/progress/stream?jobIds=
                 (query and Last-Event-ID parsed, admission, the response)
    _admission   StreamHub: how many streams are open, refusing past max_subscribers, and
                 telling every stream when the server shuts down (StreamHandle)
    _loop        the stream loops: snapshot → event, heartbeats, store outages, shutdown
    _framing     the wire format: one event's ``event`` / ``id`` / ``data`` / ``retry`` lines
    _resume      Last-Event-ID: one job's seq, or a multi-job stream's seq vector
    _pace        minIntervalMs: at most one event per job per interval per subscriber
    _refusal     --refuse-streams: every stream answered 503 (a testing option)

The write timeout of every response (a frozen client is dropped) is ``server/_guard.py``: it
wraps the whole app, not only the streams.
"""
