"""Operations building blocks every app may use: health checks, Prometheus metrics, structured logs.

A library, not an app, at the bottom of the layering beside ``httpapi``: it imports nothing of
Lanyard's, so the register, the activity API, the workflows and the apps built later (decision point,
gateway, signals) all declare their checks and metrics here without importing each other.
"""
