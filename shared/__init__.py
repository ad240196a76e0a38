"""What the broadcast engine's services share: the event contract and the plumbing to carry it."""
