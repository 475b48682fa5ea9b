"""The revisions, oldest first; list each new one in newsletter.store.schema.REVISIONS too."""
