"""What subscription resolvers return: streams of a channel's events (``channels``: ``instances``,
``stream``, ``listen``), the seed's named channels that users subscribe to (``models``), the changes
of access announced to open streams (``access``), and one stream of everything a user follows
(``user_streams``)."""
