"""The response cache (``--cache [DIR]``): a request answered successfully before is answered
from it, on every route, and not sent or submitted again.

    source.py   the engine's source of cached answers, and where a run's successes are kept
    store.py    the SQLite database (WAL), shared by the processes using one cache at once
"""
