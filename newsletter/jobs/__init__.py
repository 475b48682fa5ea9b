"""The jobs: the one layer that wires the stages, called alike by the CLI, the scheduler and the web app.

`issues` gathers, composes, builds, checks and approves; `delivery` sends proofs and issues, counts
and publishes; `digest` composes (and may send) what is new; `accounts` keeps the desk's editors and
`desk` is what a signed-in editor does (the same jobs, audited, with the two-person approval rule). Each job is one function; every rule
about who may send what (approval, a build changed after sending began, demo subscribers) is
written here once. Nothing here prints, and nothing below this layer imports it. The editing jobs
never load the send stack, so `newsletter compose` and `build` start fast.
"""

from __future__ import annotations

__all__ = ["issues", "delivery", "digest", "accounts", "desk"]
