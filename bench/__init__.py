"""`make bench`: what the functions cost against the SDK called directly (issue 8)."""
