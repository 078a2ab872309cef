"""An HTTP request that cannot be served as sent: its answer's status and why."""

__all__ = ["HTTPError", "REASONS"]

REASONS = {
    400: "Bad Request", 408: "Request Timeout", 411: "Length Required",
    413: "Content Too Large", 414: "URI Too Long", 417: "Expectation Failed",
    431: "Request Header Fields Too Large", 500: "Internal Server Error",
    501: "Not Implemented", 505: "HTTP Version Not Supported",
}


class HTTPError(Exception):
    """The request is refused with *status*; *why* goes to the log, never to the
    client (the answer says only the status)."""

    request = None  # the Request it was found in, when there was one

    def __init__(self, status, why):
        super().__init__(f"{status} {REASONS[status]}: {why}")
        self.status = status
        self.why = why
