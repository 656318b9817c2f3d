"""Event feeds for bucket watches: TOS notifications as a trigger, the listing as the truth."""
