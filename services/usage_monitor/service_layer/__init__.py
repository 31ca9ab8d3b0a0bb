"""The service layer: read a card, let the domain decide, commit, publish (the outbox)."""
