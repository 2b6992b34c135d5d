"""The transfer engine: plain Python, no Django, Channels or Celery (an import-linter contract keeps it so).

It takes dataclasses in, gives results out, and reports progress through a callback that can also
say "stop". Its tests need no database.
"""
