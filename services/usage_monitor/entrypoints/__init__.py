"""Entry points: the faust app and its agents, the usage consumer, the web views."""
