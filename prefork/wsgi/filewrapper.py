"""wsgi.file_wrapper: a file the application returns, sent by sendfile(2) when it
is a real file (and in blocks otherwise), even after middleware passed it on."""

import io
import os
import stat

__all__ = ["FileWrapper"]


class FileWrapper:
    """Wraps *filelike*; iterating it reads *blksize* bytes at a time."""

    def __init__(self, filelike, blksize=65536):
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self):
        while True:
            data = self.filelike.read(self.blksize)
            if not data:
                return
            yield data

    def fileno(self):
        """The descriptor of a real, regular file to send from, or None."""
        try:
            fd = self.filelike.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation):
            return None
        try:
            regular = stat.S_ISREG(os.fstat(fd).st_mode)
        except OSError:
            return None
        return fd if regular and not isinstance(self.filelike, io.TextIOBase) else None

    def position(self):
        try:
            return self.filelike.tell()
        except (AttributeError, OSError):
            return 0
