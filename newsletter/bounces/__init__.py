"""After the send: bounce and complaint intake, VERP, suppression and rates (issue #16)."""
