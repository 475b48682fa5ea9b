"""The parts of `newsletter serve` (see newsletter.serve): pages, security, archive, subscription flows."""
