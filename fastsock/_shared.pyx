# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The shared-memory block a master maps before forking, read and written by plain loads and
stores: no syscalls, and one try-lock (which worker may stand aside from a listener). A
respawned worker takes a free slot and continues its counters, so sums over all slots only
grow. Beside it, an eventfd per slot, inherited by every worker."""
import mmap
import os

from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_WRITABLE

from fastsock._sys cimport (
    __builtin_popcountll, __sync_bool_compare_and_swap, __sync_fetch_and_add,
)

# request duration buckets, in seconds: sub-millisecond resolution at the bottom
DURATION_BOUNDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                   0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
cdef double BOUNDS[N_BOUNDS]           # written only at import: read-only for every thread
for _i, _b in enumerate(DURATION_BOUNDS):
    BOUNDS[_i] = _b
assert len(DURATION_BOUNDS) == N_BOUNDS

# where handlers run while their requests wait (a Deferred's kind): the in-flight gauge's label
KIND_ASYNC, KIND_THREAD, KIND_WSGI, KIND_ASGI = K_ASYNC, K_THREAD, K_WSGI, K_ASGI
HANDLER_KINDS = ("async", "thread", "wsgi", "asgi")
assert len(HANDLER_KINDS) == N_KINDS
LISTENER_NAMES = ("main", "metrics")    # the listeners' order in each worker (worker.py)
assert len(LISTENER_NAMES) == N_LISTENERS

# the metric label of each close reason, indexed by its value (the table in _shared.pxd)
CLOSE_REASONS = tuple([fs_close_reason_names[_i].decode("ascii") for _i in range(N_CLOSE_REASONS)])

cdef extern from *:
    """
    #define FS_KEY_USED (1LL << 62)
    """
    # Set in every key of the label tables, whose empty cells hold key 0: else route 0 (none)
    # with method 0 (other) makes duration key 0, taken for an empty cell. Route ids are
    # non-negative ints, below bit 62 even shifted by 24.
    const long long KEY_USED "FS_KEY_USED"


cdef void forget_the_dead(Slot* s) noexcept nogil:
    """A worker starting in a slot: what its predecessor had open (connections, WebSockets,
    requests of each kind) died with it, uncounted if it was killed (SIGKILL, the watchdog)."""
    cdef int kind
    s.conns = s.ws_open = s.in_flight = 0
    for kind in range(N_KINDS):
        s.waiting_kinds[kind] = 0


cdef inline unsigned long long _mix(unsigned long long k) noexcept nogil:
    k ^= k >> 33
    k *= 0xff51afd7ed558ccdULL
    k ^= k >> 33
    return k


cdef inline long long* _cell(char* table, size_t stride, unsigned long long mask,
                             long long key) noexcept nogil:
    """Open addressing in a fixed table whose cells start with their key: the cell for key,
    claimed if it is new; NULL when the table is full. key is never 0, the empty marker (a
    key 0 would be handed the first empty cell unclaimed, whose counts the next key to claim
    it inherits): callers set KEY_USED."""
    cdef unsigned long long i = _mix(key) & mask, probes = 0
    cdef long long* k
    while probes <= mask:
        k = <long long*>(table + i * stride)
        if k[0] == key:
            return k
        if k[0] == 0:
            k[0] = key
            return k
        i = (i + 1) & mask
        probes += 1
    return NULL


cdef void count_request(Slot* s, int route, int method, int status, double seconds) noexcept nogil:
    """One answered request: its (route, method, status) counter and its duration histogram.
    A full table counts the request as untracked."""
    cdef int b = 0
    cdef ReqCell* r = <ReqCell*>_cell(<char*>s.req_cells, sizeof(ReqCell), REQ_CELLS - 1,
                                      KEY_USED | (<long long>route << 24) | (method << 16)
                                      | status)
    cdef DurCell* d
    if r == NULL:
        s.untracked += 1
        return
    r.count += 1
    d = <DurCell*>_cell(<char*>s.dur_cells, sizeof(DurCell), DUR_CELLS - 1,
                        KEY_USED | (<long long>route << 8) | method)
    if d == NULL:
        return
    while b < N_BOUNDS and seconds > BOUNDS[b]:
        b += 1
    d.buckets[b] += 1
    d.sum += seconds
    d.count += 1


cdef class SharedState:
    def __cinit__(self, int nslots, Py_ssize_t app_bytes=262144):
        cdef Py_buffer view
        if app_bytes < 64 or app_bytes % 8:
            raise ValueError("app_bytes: a multiple of 8, at least 64")
        self.nslots = nslots
        self.app_bytes = app_bytes
        # an app-metrics area per slot, and one more: the master's (the app's values made
        # before the fork)
        self.mm = mmap.mmap(-1, sizeof(Header) + nslots * sizeof(Slot)
                            + (nslots + 1) * app_bytes)
        PyObject_GetBuffer(self.mm, &view, PyBUF_WRITABLE)
        self.base = <char*>view.buf     # the mapping outlives this view: self.mm keeps it
        PyBuffer_Release(&view)
        self.header = <Header*>self.base
        self.nudge_fds = [os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC) for _ in range(nslots)]

    def __dealloc__(self):
        for fd in self.nudge_fds or ():
            os.close(fd)

    cdef Slot* slot(self, int i) noexcept:
        return <Slot*>(self.base + sizeof(Header)) + i

    def nudge_fd(self, int i):
        """The eventfd that wakes slot i's worker to watch the listeners again."""
        return self.nudge_fds[i]

    # ---- the master's side

    @property
    def ready(self):
        return bool(self.header.ready)

    @ready.setter
    def ready(self, bint value):
        self.header.ready = value

    @property
    def draining(self):
        return bool(self.header.draining)

    @draining.setter
    def draining(self, bint value):
        self.header.draining = value

    def set_workers_alive(self, long long n):
        self.header.workers_alive = n

    def count_restart(self):
        self.header.restarts += 1

    def slot_state(self, int i):
        return self.slot(i).state

    def set_slot(self, int i, long long pid, long long state):
        cdef Slot* s = self.slot(i)
        if state == SLOT_FREE and s.aside:  # gone while standing aside: its share goes too
            __sync_fetch_and_add(&self.header.aside, -__builtin_popcountll(s.aside))
            s.aside = 0
        if state == SLOT_FREE and s.pid:    # killed while deciding to stand aside: unlock
            __sync_bool_compare_and_swap(&self.header.aside_lock, s.pid, 0)
        s.pid = pid
        s.state = state
        s.heartbeat = 0

    def heartbeat(self, int i):
        """When slot i's loop last turned (time.monotonic()), or 0 before its first turn."""
        return self.slot(i).heartbeat

    def free_slot(self):
        """A slot no live worker holds, or -1."""
        for i in range(self.nslots):
            if self.slot(i).state == SLOT_FREE:
                return i
        return -1

    def app_area(self, int i):
        """A writable view of slot i's area for application metrics (i == nslots: the
        master's)."""
        cdef Py_ssize_t start = sizeof(Header) + self.nslots * sizeof(Slot) + i * self.app_bytes
        if not 0 <= i <= self.nslots:
            raise IndexError(i)
        return memoryview(self.mm)[start:start + self.app_bytes]

    def slot_pid(self, int i):
        """The pid of slot i's worker (0 while it is free or being forked)."""
        return self.slot(i).pid

    # ---- the scrape's side: a snapshot summed over every slot ever used

    def snapshot(self):
        """-> dict of sums over all slots, plus per-slot pids of live workers. Requests are
        keyed (route, method, status), durations (route, method)."""
        cdef int i, j, b
        cdef long long key
        cdef Slot* s
        cdef DurCell* d
        requests, durations, closed, parse_errors, workers = {}, {}, [0] * N_CLOSE_REASONS, {}, {}
        totals = dict(in_flight=0, accepted=0, open=0, request_bytes=0, response_bytes=0,
                      untracked=0, refused_concurrency=0, refused_pool=0, shed_fds=0,
                      pool_threads=0, pool_running=0, pool_queued=0, tasks=0,
                      ws_open=0, ws_opened=0,
                      ws_messages_in=0, ws_messages_out=0, ws_bytes_in=0, ws_bytes_out=0)
        ws_closes = [0] * N_WS_CODES
        waiting_kinds, busy, serving = [0] * N_KINDS, {}, []
        queues = [{} for _ in range(N_LISTENERS)]  # per listener: socket -> (queue, limit)
        tls = dict(handshakes={}, failures=[0] * N_TLS_FAILURES, ktls=[0, 0], reloads=[0, 0])
        for i in range(self.nslots):
            s = self.slot(i)
            if s.state != SLOT_FREE and s.pid:
                workers[i] = s.pid
            totals["accepted"] += s.accepted
            totals["request_bytes"] += s.request_bytes
            totals["response_bytes"] += s.response_bytes
            totals["untracked"] += s.untracked
            totals["refused_concurrency"] += s.refused_concurrency
            totals["refused_pool"] += s.refused_pool
            totals["shed_fds"] += s.shed_fds
            if s.busy:
                busy[i] = s.busy
            totals["ws_opened"] += s.ws_opened
            totals["ws_messages_in"] += s.ws_messages_in
            totals["ws_messages_out"] += s.ws_messages_out
            totals["ws_bytes_in"] += s.ws_bytes_in
            totals["ws_bytes_out"] += s.ws_bytes_out
            for j in range(N_WS_CODES):
                ws_closes[j] += s.ws_closes[j]
            self._tls_sums(s, tls)
            if s.state != SLOT_FREE:
                totals["in_flight"] += s.in_flight
                totals["open"] += s.conns
                totals["ws_open"] += s.ws_open
                for j in range(N_KINDS):
                    waiting_kinds[j] += s.waiting_kinds[j]
                self._saturation_figures(s, totals, queues)
                if s.state == SLOT_RUNNING or s.state == SLOT_RETIRING:
                    serving.append((i, s.saturation, s.heartbeat))
            for j in range(<int>N_CLOSE_REASONS):
                closed[j] += s.closed[j]
            for j in range(N_PARSE_REASONS):
                if s.parse_errors[j]:
                    parse_errors[j] = parse_errors.get(j, 0) + s.parse_errors[j]
            for j in range(REQ_CELLS):
                key = s.req_cells[j].key
                if key:
                    key ^= KEY_USED
                    k = (key >> 24, (key >> 16) & 0xFF, key & 0xFFFF)
                    requests[k] = requests.get(k, 0) + s.req_cells[j].count
            for j in range(DUR_CELLS):
                d = &s.dur_cells[j]
                if d.key:
                    key = d.key ^ KEY_USED
                    entry = durations.setdefault((key >> 8, key & 0xFF),
                                                 [0, 0.0, [0] * (N_BOUNDS + 1)])
                    entry[0] += d.count
                    entry[1] += d.sum
                    for b in range(N_BOUNDS + 1):
                        entry[2][b] += d.buckets[b]
        return dict(totals, requests=requests, durations=durations, closed=closed,
                    ws_closes=ws_closes, tls=tls, waiting_kinds=waiting_kinds, busy=busy,
                    serving=serving, accept_queues=[
                        (sum([f[0] for f in by_socket.values()]),
                         sum([f[1] for f in by_socket.values()])) if by_socket else None
                        for by_socket in queues],
                    parse_errors=parse_errors, workers=workers,
                    workers_alive=self.header.workers_alive, restarts=self.header.restarts)

    cdef void _saturation_figures(self, Slot* s, dict totals, list queues):
        """A live worker's pool, tasks and accept queues. Workers that share a listener
        (one socket: the same cookie) report the same queue: the latest sample counts, once;
        each worker's own socket (--accept reuseport) counts apiece."""
        cdef int tag
        totals["pool_threads"] += s.pool_threads
        totals["pool_running"] += min(s.pool_jobs, s.pool_threads)
        totals["pool_queued"] += max(0, s.pool_jobs - s.pool_threads)
        totals["tasks"] += s.tasks
        for tag in range(N_LISTENERS):
            if s.accept_limit[tag] <= 0:        # no TCP listener there (or no tick yet)
                continue
            by_socket = queues[tag]
            seen = by_socket.get(s.accept_cookie[tag])
            if seen is None or s.heartbeat > seen[2]:
                by_socket[s.accept_cookie[tag]] = (s.accept_queue[tag], s.accept_limit[tag],
                                                   s.heartbeat)

    cdef void _tls_sums(self, Slot* s, dict tls):
        cdef int v, c, r
        for v in range(2):
            for c in range(N_TLS_CIPHERS):
                for r in range(2):
                    if s.tls_handshakes[v][c][r]:
                        k = (v, c, r)
                        tls["handshakes"][k] = tls["handshakes"].get(k, 0) \
                            + s.tls_handshakes[v][c][r]
        for v in range(N_TLS_FAILURES):
            tls["failures"][v] += s.tls_failures[v]
        for v in range(2):
            tls["ktls"][v] += s.tls_ktls[v]
            tls["reloads"][v] += s.tls_reloads[v]

    def count_tls_reload(self, int i, bint ok):
        """Worker i reloaded its certificates (ok), or kept the old ones (a bad new file)."""
        self.slot(i).tls_reloads[0 if ok else 1] += 1

    STARTING = SLOT_STARTING
    RUNNING = SLOT_RUNNING
    DRAINING = SLOT_DRAINING
    RETIRING = SLOT_RETIRING
    START_FAILED = SLOT_START_FAILED
    FREE = SLOT_FREE
