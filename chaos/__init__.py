"""The chaos delivery run (`make chaos`): faulty receivers, SIGKILLed workers, a database restart.

`chaos/run.py` drives it; `chaos.receiver` is the faulty receiver and `chaos.publisher` the
publisher that runs inside `manage.py shell`.
"""
