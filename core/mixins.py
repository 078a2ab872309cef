"""Mix-ins that take each request off the server's loop: one process or one thread each.

A mix-in goes first in the bases (``class S(ForkingMixIn, TCPServer)``) because it
overrides process_request() and server_close() of the server it is mixed into.
"""

import os
import sys
import threading

__all__ = ["ThreadingMixIn"]


def _flush_std_streams():
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass  # a closed or broken stream must not stop the child from exiting


if hasattr(os, "fork"):
    __all__ += ["ForkingMixIn"]

    class ForkingMixIn:
        """Handle each request in a child process of its own.

        ``max_children`` bounds the children alive at once: past it the server
        waits for one to exit before it accepts more.  Exited children are reaped
        from service_actions() and handle_timeout(); server_close() reaps the rest,
        waiting for them when ``block_on_close`` is true.
        """

        timeout = 300
        active_children = None
        max_children = 40
        block_on_close = True

        def collect_children(self, *, blocking=False):
            """Reap exited children; with *blocking*, wait for every child to exit."""
            children = self.active_children
            if children is None:
                return
            # At the cap, block on any child: one waitpid() per exit instead of one
            # per child.  It may reap a child this server did not fork, which is why
            # it is done only when the cap forces a wait.
            while len(children) >= self.max_children:
                try:
                    pid, _ = os.waitpid(-1, 0)
                except ChildProcessError:
                    children.clear()  # none left at all: whoever reaped them, they are gone
                except OSError:
                    break
                else:
                    children.discard(pid)
            flags = 0 if blocking else os.WNOHANG
            for pid in list(children):
                try:
                    done, _ = os.waitpid(pid, flags)
                except ChildProcessError:
                    children.discard(pid)  # reaped elsewhere
                except OSError:
                    pass
                else:
                    if done:
                        children.discard(pid)

        def handle_timeout(self):
            """Reap exited children while no request comes in."""
            self.collect_children()

        def service_actions(self):
            """Reap exited children on every turn of serve_forever()."""
            self.collect_children()

        def process_request(self, request, client_address):
            """Fork; the child handles the request and exits, the parent goes on."""
            pid = os.fork()
            if pid:
                if self.active_children is None:
                    self.active_children = set()
                self.active_children.add(pid)
                self.close_request(request)  # the child holds its own copy
                return
            # In the child.  Whatever happens, it must end here with os._exit():
            # returning would run the parent's loop a second time in this process.
            status = 1
            try:
                self.finish_request(request, client_address)
                status = 0
            except Exception:
                self.handle_error(request, client_address)
            finally:
                try:
                    self.shutdown_request(request)
                finally:
                    _flush_std_streams()
                    os._exit(status)

        def server_close(self):
            """Close the server, then reap children (waiting when ``block_on_close``)."""
            super().server_close()
            self.collect_children(blocking=self.block_on_close)


class _JoinableThreads:
    """The request threads server_close() must wait for; finished ones are dropped."""

    def __init__(self):
        self._threads = []
        self._lock = threading.Lock()

    def add(self, thread):
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)

    def join(self):
        with self._lock:
            threads, self._threads = self._threads, []
        for thread in threads:
            thread.join()


class ThreadingMixIn:
    """Handle each request in a thread of its own.

    ``daemon_threads`` makes those threads daemons (they do not keep the
    interpreter alive); with ``block_on_close`` true, server_close() waits for
    the non-daemon ones to finish.
    """

    daemon_threads = False
    block_on_close = True

    def process_request_thread(self, request, client_address):
        """The body of a request thread: handle, report errors, shut the request down."""
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)

    def process_request(self, request, client_address):
        """Start a thread that runs process_request_thread()."""
        thread = threading.Thread(target=self.process_request_thread,
                                  args=(request, client_address))
        thread.daemon = self.daemon_threads
        if self.block_on_close and not thread.daemon:
            threads = self.__dict__.get("_request_threads")
            if threads is None:
                threads = self._request_threads = _JoinableThreads()
            threads.add(thread)
        thread.start()

    def server_close(self):
        """Close the server, then wait for tracked request threads."""
        super().server_close()
        threads = self.__dict__.get("_request_threads")
        if threads is not None:
            threads.join()
