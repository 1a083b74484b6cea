"""The transactional outbox: an event's row is written in the transaction of its write
(``writer``), published right after the commit, and forwarded later by the process that holds
the destination's lease when publishing failed (``forwarder``); ``rows`` names the rows,
``health`` says whether publishing works."""
