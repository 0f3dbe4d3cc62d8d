"""What the API does, below HTTP: one service per API (responses, conversations, models).

Routes in `threadline.api` parse, authenticate and answer; they call these services, which
call the engine, the job queue and the store, and return plain values: a Response, its
events, a Page. `app.py` builds them once, at start-up.
"""
