"""Shared test harness: real servers on 127.0.0.1 that the fixtures in tests/conftest.py start.

See README.md in this folder for each fixture's API.
"""
