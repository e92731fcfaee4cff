"""The registry: safe people, safe projects, datasets and grants.

Views, CLI commands and services call the functions in `service` (writes,
each audited in the same transaction) and `access.access_decision` (the one
place that decides who may work on which project).
"""
