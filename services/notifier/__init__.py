"""notifier: warns customers of card alerts by signed webhook and SMS."""
