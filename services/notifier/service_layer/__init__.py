"""The notifier's use cases: scheduling the deliveries an alert makes, keeping customers'
settings, and attempting due deliveries (claim → send → finish)."""
