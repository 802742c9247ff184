"""End-of-job notifications: targets checked at submit (``targets``), one delivery with bounded retries
(``deliver``), and the server's background sender that records each outcome (``sender``)."""
