"""Operator tool logic behind cardctl's subcommands (argument parsing stays in cardctl)."""
