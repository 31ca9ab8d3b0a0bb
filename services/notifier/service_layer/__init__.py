"""The notifier's use cases: scheduling deliveries and attempting due ones."""
