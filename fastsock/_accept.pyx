# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Which worker accepts. Workers that share a listener watch it with EPOLLEXCLUSIVE, which wakes
one worker waiting in epoll_wait per connection. Two policies keep that fair and alive:

- stand aside: a worker woken for a connection another took first stops watching the listener
  (more workers wait than there is work for), as long as MIN_WATCHERS others that are not stuck
  still watch it; it watches again at its next tick, or when called back;
- balance: after accepting, a worker that holds more connections than another running worker
  goes to the back of the listener's queue, or calls back the one with the fewest (a load
  balancer's few long connections spread out; short ones, closed by now, move nothing).

Each worker's bits (watching, aside) and its connection count are in its slot of shared memory;
a call-back is a write to the other worker's eventfd. No epoll here: the loop does that.
"""
from fastsock._sys cimport (
    __sync_bool_compare_and_swap, __sync_fetch_and_add, __sync_lock_release, accept4, close,
    open, read, write, O_RDONLY, O_CLOEXEC, SOCK_CLOEXEC,
)
from fastsock._shared cimport SLOT_RUNNING

import logging

error_log = logging.getLogger("fastsock.error")

# a worker neither waiting for events nor woken this recently is taken as stuck in a handler:
# well above a loop turn's work, well below what a client notices as a stalled accept
cdef double STUCK_AFTER = 0.01
# out of fds: a warning a second, not one per connection shed
cdef double SHED_LOG_EVERY = 1.0


cdef AcceptPolicy accept_policy(SharedState shared, int slot, bint balancing):
    """The policy of the worker in slot; balancing: other workers share its listeners."""
    cdef AcceptPolicy p = AcceptPolicy.__new__(AcceptPolicy)
    p.shared = shared
    p.me = shared.slot(slot)
    p.me.watching = 0
    if balancing:
        p.nudge_fd = shared.nudge_fd(slot)
    p.spare_fd = open(b"/dev/null", O_RDONLY | O_CLOEXEC)
    return p


cdef class AcceptPolicy:
    """Decides; the loop (epoll, accept4) acts. Attributes in _accept.pxd."""

    def __cinit__(self):
        self.nudge_fd = -1
        self.spare_fd = -1

    def __dealloc__(self):
        if self.spare_fd >= 0:
            close(self.spare_fd)

    cdef void watching(self, long long bit) noexcept:
        """The loop watches the listener of bit (again): it no longer stands aside from it."""
        self.me.watching |= bit
        self.end_aside(bit)

    cdef void not_watching(self, long long bit) noexcept:
        self.me.watching &= ~bit

    cdef void end_aside(self, long long bit) noexcept:
        """Watched again, or closed: this worker no longer counts as standing aside."""
        if self.me.aside & bit:
            self.me.aside &= ~bit
            __sync_fetch_and_add(&self.shared.header.aside, -1)

    cdef bint stand_aside(self, long long bit, double now) noexcept:
        """Woken for a connection another worker took first: -> True when this worker stops
        watching the listener of bit (the loop unwatches it) until its next tick or a
        call-back, which MIN_WATCHERS other responsive watchers allow. One decides at a time:
        two deciding at once could both go and leave too few watching."""
        cdef long long* lock = &self.shared.header.aside_lock
        cdef bint aside = False
        if not __sync_bool_compare_and_swap(lock, 0, self.me.pid):
            return False                    # another is deciding: stay
        if self.responsive_others(bit, now) >= MIN_WATCHERS:
            self.me.watching &= ~bit        # before the lock is let go: the others count it
            self.me.aside |= bit
            __sync_fetch_and_add(&self.shared.header.aside, 1)
            aside = True
        __sync_lock_release(lock)
        return aside

    cdef bint balance(self, long long bit) noexcept:
        """After accepting from the listener of bit: call back the running worker with the
        fewest connections among those that stand aside, if it has fewer than this one; ->
        True when another watcher holds fewer, so this worker goes to the back of the queue
        (the loop unwatches and watches again)."""
        cdef Slot* s
        cdef int i
        cdef bint requeue = False
        if self.me.watching & bit:
            for i in range(self.shared.nslots):
                s = self.shared.slot(i)
                if s != self.me and s.state == SLOT_RUNNING and s.watching & bit and \
                        s.conns < self.me.conns:
                    requeue = True
                    break
        self.call_back(bit, self.me.conns)
        return requeue

    cdef void keep_a_spare(self, double now) noexcept:
        """While some workers stand aside: if no other responsive watcher of a listener this
        worker watches is left, call one back before this worker runs handlers (and maybe gets
        stuck too)."""
        cdef long long bit
        cdef int tag
        for tag in range(64):
            bit = (<long long>1) << tag
            if bit > self.me.watching or bit <= 0:
                break
            if self.me.watching & bit and self.responsive_others(bit, now) == 0:
                self.call_back(bit, (<long long>1) << 62)

    cdef void called_back(self) noexcept:
        """Another worker called this one back: take its nudge (the loop watches again)."""
        cdef unsigned long long n
        read(self.nudge_fd, &n, 8)

    cdef int responsive_others(self, long long bit, double now) noexcept:
        """Other running workers that watch the listener of bit and are not stuck: waiting
        for events, or woken less than STUCK_AFTER ago."""
        cdef Slot* s
        cdef int i, n = 0
        for i in range(self.shared.nslots):
            s = self.shared.slot(i)
            if s != self.me and s.state == SLOT_RUNNING and s.watching & bit and \
                    (s.woke == 0 or now - s.woke < STUCK_AFTER):
                n += 1
        return n

    cdef void call_back(self, long long bit, long long fewer_than) noexcept:
        """Wake the running worker with the fewest connections (fewer than fewer_than) among
        those not watching the listener of bit, to watch it again."""
        cdef Slot* s
        cdef int i, fewest = -1
        cdef unsigned long long one = 1
        for i in range(self.shared.nslots):
            s = self.shared.slot(i)
            if s != self.me and s.state == SLOT_RUNNING and not s.watching & bit and \
                    s.conns < fewer_than:
                fewer_than, fewest = s.conns, i
        if fewest >= 0:
            write(<int>self.shared.nudge_fds[fewest], &one, 8)

    cdef bint shed(self, int listen_fd, double now):
        """Out of file descriptors: accept one connection on the spare fd and close it, so the
        backlog moves and the listener does not stay readable. -> False when even that
        failed: the loop stops watching the listener until its next tick. Existing
        connections keep being served."""
        cdef int fd
        if self.spare_fd >= 0:
            close(self.spare_fd)
            self.spare_fd = -1
            fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC)
            if fd >= 0:
                close(fd)
                self.me.shed_fds += 1
            self.spare_fd = open(b"/dev/null", O_RDONLY | O_CLOEXEC)
        if now >= self.next_shed_log:
            self.next_shed_log = now + SHED_LOG_EVERY
            error_log.warning("out of file descriptors: shedding new connections")
        return self.spare_fd >= 0

    cdef void close_in_child(self) noexcept:
        if self.spare_fd >= 0:
            close(self.spare_fd)
            self.spare_fd = -1

    # ------------------------------------------------------------------ Python API, for tests

    def stands_aside(self, int tag, double now):
        """stand_aside() for the listener of tag: the decision alone, no epoll."""
        return self.stand_aside((<long long>1) << tag, now)

    def requeues(self, int tag):
        """balance() for the listener of tag: -> whether this worker goes to the back."""
        return self.balance((<long long>1) << tag)


def policy_over(SharedState shared, int slot, list slots):
    """Tests: the balancing policy of the worker in slot, over slots written as given: one
    (state, watching, conns, woke) per slot (the decisions without a server)."""
    cdef Slot* s
    for i, (state, watching, conns, woke) in enumerate(slots):
        s = shared.slot(i)
        s.pid, s.state, s.watching, s.conns, s.woke = 1000 + i, state, watching, conns, woke
    p = accept_policy(shared, slot, True)
    p.me.watching = slots[slot][1]
    return p
