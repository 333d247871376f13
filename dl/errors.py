"""User-facing errors.

Library code raises `ConfigError` for anything a user can fix by changing a
config, a flag or an input file. The binaries print its message (no
traceback) and exit with status 2.
"""


class ConfigError(ValueError):
    """A config, flag or input that dl cannot use; the message says what to change."""


def unknown_name(kind: str, name: str, known) -> ConfigError:
    """Builds the error for a name missing from one of dl's explicit tables.

    Args:
      kind: what the name is for, e.g. "model" or "optimizer".
      name: the name that was asked for.
      known: the valid names.

    Returns:
      A ConfigError listing the valid names.
    """
    return ConfigError(f"unknown {kind} {name!r}; known {kind}s: {', '.join(sorted(known))}")
