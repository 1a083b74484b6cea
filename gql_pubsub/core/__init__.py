"""The bottom layer, what every other one shares: the event and its wire encoding (``events``),
ORM work from the event loop (``db``), the control channel's announcements (``control``), the
sockets' timers (``timers``), the metrics (``metrics``) and the ASGI types (``asgi_types``)."""
