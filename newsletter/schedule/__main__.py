"""`python -m newsletter.schedule --config newsletter.toml`: the scheduler without the `newsletter` CLI."""

from __future__ import annotations

from newsletter.cli_schedule import main  # an entry point is an edge of its own (see [tool.importlinter])

main()
