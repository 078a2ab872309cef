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
            # What the parent printed and has not written yet is written now, once: the
            # child, which writes what it prints before it exits, would write it again.
            _flush_std_streams()
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


class _RequestThreads(list):
    """The request threads server_close() waits for, as a list: code written for
    socketserver reads ``server._threads``.  Daemon threads are not kept, and the
    finished ones are dropped each time a thread is added, so the list holds the
    live threads, not every thread the server ever started."""

    def append(self, thread):
        self[:] = [t for t in self if t.is_alive()]
        if not thread.daemon:
            super().append(thread)

    def join(self):
        threads, self[:] = self[:], []
        for thread in threads:
            thread.join()


class _NoRequestThreads:
    """``_threads`` of a server that does not wait for its threads (block_on_close
    false): nothing is kept, nothing is waited for."""

    def append(self, thread):
        pass

    def join(self):
        pass

    def __len__(self):
        return 0

    def __iter__(self):
        return iter(())


class ThreadingMixIn:
    """Handle each request in a thread of its own.

    ``daemon_threads`` makes those threads daemons (they do not keep the
    interpreter alive); with ``block_on_close`` true, server_close() waits for
    the non-daemon ones to finish.  Those are listed in ``_threads`` while they
    run.
    """

    daemon_threads = False
    block_on_close = True
    _threads = _NoRequestThreads()

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
        if self.block_on_close and "_threads" not in vars(self):
            self._threads = _RequestThreads()  # this server's own, made on first use
        thread = threading.Thread(target=self.process_request_thread,
                                  args=(request, client_address))
        thread.daemon = self.daemon_threads
        self._threads.append(thread)
        thread.start()

    def server_close(self):
        """Close the server, then wait for the request threads still running."""
        super().server_close()
        self._threads.join()
