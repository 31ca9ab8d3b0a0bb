"""What to send, when, and in which words: pure, no I/O."""
