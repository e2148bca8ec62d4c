"""The version triplet users and operators compare: package, daemon build,
Global Store schema version."""

from __future__ import annotations

from tensorwasm_tc import _core


def build_string() -> str:
    """The daemon build string: package version + git sha + profile."""
    info = _core.build_info()
    return f"{info['version']}+{info['git_sha'][:12]}.{info['profile']}"


def version_triplet() -> str:
    from tensorwasm_tc.tensorcast.global_store.schema import SCHEMA_VERSION

    return (
        f"tensorcast {_core.__version__}, daemon build {build_string()}, "
        f"global store schema {SCHEMA_VERSION}"
    )
