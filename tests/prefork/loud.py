"""A handler module that prints as it is imported (as applications do: "loading the
model..."), for the test that the master's unwritten output is written once."""

import socketserver

print("loud: imported")  # buffered when stdout is a file or a pipe (systemd's journal)


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        self.wfile.write(b"loud\n")
