"""The shopper's page: ``embed web`` (see :mod:`embed.web.app`)."""
