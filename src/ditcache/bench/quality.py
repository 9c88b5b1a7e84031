"""The bench's quality measures live in ``ditcache.quality`` (below ``models``, whose cards use them too)."""

from ..quality import Quality, _centred_interval, _interval

__all__ = ["Quality", "_centred_interval", "_interval"]
