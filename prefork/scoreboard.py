"""Shared-memory slots where workers report to the master.

The master maps an anonymous shared region before it forks, so every worker
sees the same pages.  Slot i belongs to one worker at a time: the worker writes
it, the master reads it (and clears it when it hands the slot to a new worker).
A field is written with one ``pack_into`` of at most 8 bytes at an aligned
offset, so a reader never sees half of a number; a reader may see fields of two
different moments, which the master tolerates (it only compares against
deadlines).  Nothing here touches a disk.
"""

import mmap
import struct
import time

__all__ = ["Scoreboard", "Slot", "BOOTING", "IDLE", "BUSY", "STOPPING"]

BOOTING, IDLE, BUSY, STOPPING = 1, 2, 3, 4

# pid, generation, state, requests, heartbeat (monotonic), started (monotonic), busy
# (seconds spent in finished requests), note.  Fields sit at aligned offsets: 0 pid
# i32, 4 generation u32, 8 state u32, 16 requests u64, 24 heartbeat f64, 32 started
# f64, 40 busy f64, 48 note (bytes, NUL-padded).
_PID, _GEN, _STATE, _REQUESTS, _BEAT, _STARTED, _BUSY, _NOTE = 0, 4, 8, 16, 24, 32, 40, 48
NOTE_SIZE = 208
SLOT_SIZE = _NOTE + NOTE_SIZE  # 256


_I32, _U32, _U64, _F64 = (struct.Struct(f) for f in ("i", "I", "Q", "d"))
# state and heartbeat written together, as one request's start or end: 8 + 8 bytes.
_STATE_BEAT = struct.Struct("I4xQd")  # state (+pad), requests, heartbeat: offsets 8..32


class Slot:
    """A view of one slot; cheap to make, holds no copy of the data."""

    __slots__ = ("_buf", "_base", "index", "_served", "_busy", "_busy_since")

    def __init__(self, buf, index):
        self._buf, self._base, self.index = buf, index * SLOT_SIZE, index
        self._served = 0  # the worker's own count, mirrored into the slot
        self._busy = 0.0  # the worker's own busy total, mirrored likewise
        self._busy_since = None

    def _get(self, st, off):
        return st.unpack_from(self._buf, self._base + off)[0]

    def _put(self, st, off, value):
        st.pack_into(self._buf, self._base + off, value)

    # -- read by the master -------------------------------------------------------
    pid = property(lambda self: self._get(_I32, _PID))
    generation = property(lambda self: self._get(_U32, _GEN))
    state = property(lambda self: self._get(_U32, _STATE))
    requests = property(lambda self: self._get(_U64, _REQUESTS))
    heartbeat = property(lambda self: self._get(_F64, _BEAT))
    started = property(lambda self: self._get(_F64, _STARTED))

    def busy_time(self, now):
        """Seconds this worker has spent inside requests, the one in progress included
        (a state change records its time in the heartbeat field)."""
        total = self._get(_F64, _BUSY)
        if self.state == BUSY:
            total += max(0.0, now - self.heartbeat)
        return total

    @property
    def note(self):
        raw = bytes(self._buf[self._base + _NOTE:self._base + SLOT_SIZE])
        return raw.split(b"\0", 1)[0].decode("utf-8", "replace")

    # -- written by the master when it hands out the slot --------------------------
    def claim(self, generation, now):
        self._buf[self._base:self._base + SLOT_SIZE] = bytes(SLOT_SIZE)
        self._put(_U32, _GEN, generation)
        self._put(_F64, _STARTED, now)
        self._put(_F64, _BEAT, now)
        self._put(_U32, _STATE, BOOTING)

    def release(self):
        self._buf[self._base:self._base + SLOT_SIZE] = bytes(SLOT_SIZE)

    # -- written by the worker -----------------------------------------------------
    def set_pid(self, pid):
        self._put(_I32, _PID, pid)

    def set_state(self, state, now=None):
        """Record a state change with its time, and the requests served so far."""
        now = time.monotonic() if now is None else now
        _STATE_BEAT.pack_into(self._buf, self._base + _STATE, state, self._served, now)
        if self._busy_since is not None:  # after the state: a reader may undercount, never
            self._busy += now - self._busy_since  # count one request twice
            self._put(_F64, _BUSY, self._busy)
        self._busy_since = now if state == BUSY else None

    def beat(self, now=None):
        self._put(_F64, _BEAT, time.monotonic() if now is None else now)

    def count_request(self):
        self._served += 1

    def set_note(self, text):
        data = text.encode("utf-8", "replace")[:NOTE_SIZE - 1]
        self._buf[self._base + _NOTE:self._base + SLOT_SIZE] = data.ljust(NOTE_SIZE, b"\0")


class Scoreboard:
    """*size* slots in one anonymous shared mapping, made before any fork."""

    def __init__(self, size):
        self.size = size
        self._map = mmap.mmap(-1, max(1, size) * SLOT_SIZE,
                              flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)

    def __getitem__(self, index):
        if not 0 <= index < self.size:
            raise IndexError(index)
        return Slot(self._map, index)

    def __iter__(self):
        return (Slot(self._map, i) for i in range(self.size))

    def close(self):
        self._map.close()
