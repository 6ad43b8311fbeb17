"""Celery workers: run the model on queued jobs and write results back (see worker/app.py)."""
