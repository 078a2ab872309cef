"""Shared-memory slots where workers report to the master.

The master maps an anonymous shared region before it forks, so every worker
sees the same pages.  Slot i belongs to one worker at a time: the worker writes
it, the master reads it (and clears it when it hands the slot to a new worker).

A number is written and read as one item of a typed memoryview over the region:
one aligned store or load of at most 8 bytes, which no reader sees half done.
(``struct.pack_into`` would not do for a number: it zeroes the bytes first and
then fills them, so a reader in between reads 0, as a heartbeat of 0 is a worker
silent since the machine booted.)  A reader may see fields of two different moments,
which the master tolerates: it only compares them against deadlines.  Nothing
here touches a disk.
"""

import mmap
import struct
import time
from bisect import bisect_left

__all__ = ["Scoreboard", "Slot", "BOOTING", "IDLE", "BUSY", "STOPPING", "BUCKETS"]

BOOTING, IDLE, BUSY, STOPPING = 1, 2, 3, 4

# pid, generation, state, requests, heartbeat (monotonic), started (monotonic), busy
# (seconds spent in finished requests), note, and the finished requests counted by
# how long they took.  Fields sit at aligned offsets: 0 pid i32, 4 generation u32, 8
# state u32, 16 requests u64, 24 heartbeat f64, 32 started f64, 40 busy f64, 48 note
# (bytes, NUL-padded), 256 one u64 per bucket of BUCKETS.
_PID, _GEN, _STATE, _REQUESTS, _BEAT, _STARTED, _BUSY, _NOTE = 0, 4, 8, 16, 24, 32, 40, 48
NOTE_SIZE = 208
_HIST = _NOTE + NOTE_SIZE
# Request durations, seconds: a request is counted in the first bucket it fits under
# (one longer than the last is counted only in the requests).  Prometheus's defaults.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SLOT_SIZE = _HIST + 8 * len(BUCKETS)  # 344
_BUCKETS = len(BUCKETS)
_NOTE_FIELD = struct.Struct(f"{NOTE_SIZE - 1}s")  # NUL-padded; its last byte stays NUL
_TYPES = {_PID: "i", _GEN: "I", _STATE: "I", _REQUESTS: "Q", _BEAT: "d", _STARTED: "d",
          _BUSY: "d"}


class _Views:
    """The region seen as arrays of each field's type, indexed by byte offset."""

    def __init__(self, region):
        self.raw = memoryview(region)
        self.of = {code: self.raw.cast(code) for code in set(_TYPES.values())}
        self.field = {field: (self.of[code], self.of[code].itemsize)
                      for field, code in _TYPES.items()}

    def get(self, at, field):
        view, size = self.field[field]
        return view[(at + field) // size]

    def put(self, at, field, value):
        view, size = self.field[field]
        view[(at + field) // size] = value

    def release(self):
        self.field.clear()
        for view in self.of.values():
            view.release()
        self.raw.release()


class Slot:
    """A view of one slot; cheap to make, holds no copy of the data."""

    __slots__ = ("_views", "_base", "index", "_served", "_busy", "_busy_since", "_doubles",
                 "_counts", "_states", "_raw", "_at_beat", "_at_requests", "_at_state",
                 "_at_busy", "_at_note", "_at_hist", "_uncounted")

    def __init__(self, views, index):
        self._views, self._base, self.index = views, index * SLOT_SIZE, index
        self._served = 0  # the worker's own count, mirrored into the slot
        self._uncounted = False  # the connection being served carried no request
        self._busy = 0.0  # the worker's own busy total, mirrored likewise
        self._busy_since = None
        self._doubles = None  # the worker's own fields, for the per-request writes

    def _get(self, field):
        return self._views.get(self._base, field)

    def _put(self, field, value):
        self._views.put(self._base, field, value)

    # -- read by the master -------------------------------------------------------
    pid = property(lambda self: self._get(_PID))
    generation = property(lambda self: self._get(_GEN))
    state = property(lambda self: self._get(_STATE))
    requests = property(lambda self: self._get(_REQUESTS))
    heartbeat = property(lambda self: self._get(_BEAT))
    started = property(lambda self: self._get(_STARTED))

    def busy_time(self, now):
        """Seconds this worker has spent inside requests, the one in progress included
        (a state change records its time in the heartbeat field)."""
        total = self._get(_BUSY)
        if self.state == BUSY:
            total += max(0.0, now - self.heartbeat)
        return total

    def durations(self):
        """(the requests counted in each bucket of BUCKETS, not cumulative; the seconds
        all finished requests took)."""
        view, size = self._views.field[_REQUESTS]
        start = (self._base + _HIST) // size
        return list(view[start:start + _BUCKETS]), self._get(_BUSY)

    @property
    def note(self):
        raw = bytes(self._views.raw[self._base + _NOTE:self._base + _HIST])
        return raw.split(b"\0", 1)[0].decode("utf-8", "replace")

    # -- written by the master when it hands out the slot --------------------------
    def claim(self, generation, now):
        self.release()
        self._put(_GEN, generation)
        self._put(_STARTED, now)
        self._put(_BEAT, now)
        self._put(_STATE, BOOTING)

    def release(self):
        self._views.raw[self._base:self._base + SLOT_SIZE] = bytes(SLOT_SIZE)

    # -- written by the worker -----------------------------------------------------
    def set_pid(self, pid):
        self._put(_PID, pid)

    def set_state(self, state, now=None):
        """Record a state change with its time, and the requests served so far."""
        now = time.monotonic() if now is None else now
        # The time before the state: a reader that sees the new state sees its time
        # (busy_time() counts a request from it), never the time of the state before.
        self._put(_BEAT, now)
        self._put(_REQUESTS, self._served)
        self._put(_STATE, state)
        if self._busy_since is not None:  # after the state: a reader may undercount, never
            self._busy += now - self._busy_since  # count one request twice
            self._put(_BUSY, self._busy)
        self._busy_since = now if state == BUSY else None

    # The two writes of every request, in the order set_state() makes them, without
    # its lookups: what a worker pays per request for the master's view of it.
    def begin_request(self, now):
        """Busy since *now*."""
        if self._doubles is None:
            self._make_fast()
        self._doubles[self._at_beat] = now
        self._states[self._at_state] = BUSY
        self._busy_since = now

    def end_request(self, now):
        """Idle since *now*, one request more served (unless no_request() said the
        connection carried none); the request's note cleared."""
        took = now - self._busy_since
        self._busy += took
        doubles = self._doubles
        doubles[self._at_beat] = now
        if self._uncounted:
            self._uncounted = False
        else:
            self._served += 1
            counts = self._counts
            bucket = bisect_left(BUCKETS, took)
            if bucket < _BUCKETS:  # before the count: a reader never sees more in them
                counts[self._at_hist + bucket] += 1
            counts[self._at_requests] = self._served
        self._states[self._at_state] = IDLE
        doubles[self._at_busy] = self._busy
        self._raw[self._at_note] = 0
        self._busy_since = None

    def _make_fast(self):
        def at(field):  # (the view, the index) of one of this slot's fields
            view, size = self._views.field[field]
            return view, (self._base + field) // size
        (self._doubles, self._at_beat), (self._counts, self._at_requests), \
            (self._states, self._at_state), (_, self._at_busy) = \
            at(_BEAT), at(_REQUESTS), at(_STATE), at(_BUSY)
        self._raw, self._at_note = self._views.raw, self._base + _NOTE
        self._at_hist = (self._base + _HIST) // 8

    def beat(self, now=None):
        self._put(_BEAT, time.monotonic() if now is None else now)

    def no_request(self):
        """The connection being served carried no request (its client closed it, or
        sent nothing): end_request() does not count it."""
        self._uncounted = True

    @property
    def served(self):
        """The requests this worker has served."""
        return self._served

    def set_note(self, text):
        """One line, cut to fit and read up to its first NUL: one write of the field,
        so noting each request costs little.  (A reader in the middle of it may see
        an empty note: a note is only ever shown.)"""
        _NOTE_FIELD.pack_into(self._views.raw, self._base + _NOTE,
                              text.encode("utf-8", "replace"))


class Scoreboard:
    """*size* slots in one anonymous shared mapping, made before any fork."""

    def __init__(self, size):
        self.size = size
        self._map = mmap.mmap(-1, max(1, size) * SLOT_SIZE,
                              flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
        self._views = _Views(self._map)

    def __getitem__(self, index):
        if not 0 <= index < self.size:
            raise IndexError(index)
        return Slot(self._views, index)

    def __iter__(self):
        return (Slot(self._views, i) for i in range(self.size))

    def states(self):
        """Every slot's state, as a read-only view (a worker looks for a free one)."""
        view, size = self._views.field[_STATE]
        return view[_STATE // size::SLOT_SIZE // size].toreadonly()

    def close(self):
        self._views.release()  # the map cannot close while views of it are exported
        self._map.close()
