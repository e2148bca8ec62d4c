"""The Global Store's SQLite schema and its migrations."""

from __future__ import annotations

from typing import Final

SCHEMA_VERSION: Final = 1
