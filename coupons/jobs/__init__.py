"""The job engine: one lifecycle for every kind of background work.

``base`` (the abstract model and the status set), ``registry`` (the kinds), ``engine``
(queue, run, sweep, resume, cancel), ``tasks`` (Celery), ``selectors`` (who sees which
job, the Jobs page's list).
"""
