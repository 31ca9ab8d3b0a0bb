"""The provisioning adapter simulator: a stand-in for the carrier's HLR / CMP provisioning path.

It answers `card.commands` on `card.command_results` (after a delay, sometimes failing,
rejecting, dropping or answering twice) and reports the network's own view of the cards on
`card.events` (`card.network_observed`), with an optional drift. `network.py` holds the pure
decisions; `simulator.py` the Kafka loop; `__main__.py` the command line.
"""
