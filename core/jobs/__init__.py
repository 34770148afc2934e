"""Jobs: the run store, the job service interface, liveness checks and locks, the scheduler,
worker processes and the runner that trains one stored run.

`store`, `service`, `liveness` and `locks` import no torch; only starting or training a run
loads it.
"""
