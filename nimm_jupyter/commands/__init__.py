"""Subcommands of the ``nimm`` CLI (see ``nimm_jupyter.cli``)."""
