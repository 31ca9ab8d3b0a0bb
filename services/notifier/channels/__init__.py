"""Delivery channels: signed webhooks and SMS providers, behind SSRF-safe HTTP."""
