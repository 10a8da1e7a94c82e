# Which worker accepts: the balance of a shared listener's connections across workers, kept in
# their slots of shared memory, and what to do when file descriptors run out. Policy only: the
# loop does the epoll and accept calls and asks this room what it decides.

from fastsock._shared cimport SharedState, Slot

cdef enum:
    # at least this many other workers keep watching a shared listener before one stands
    # aside from it: one of them may be stuck in a handler, and the next must still wake
    MIN_WATCHERS = 2
    # accepts per wake-up when this worker has the listener alone: empty the backlog at once
    ACCEPT_BATCH = 64
    # ... when workers share it: one, then the next waiting worker's turn (EPOLLEXCLUSIVE
    # woke only this one), so a burst spreads over the workers
    SHARED_ACCEPT_BATCH = 1


cdef class AcceptPolicy:
    cdef SharedState shared
    cdef Slot* me                   # this worker's slot: its watching and aside bits, its conns
    cdef readonly int nudge_fd      # this worker's slot's eventfd in SharedState (not ours to
                                    # close): other workers call it back through it; -1 when
                                    # it balances with nobody (one worker, or no master)
    cdef int spare_fd               # kept open to shed a connection when fds run out
    cdef double next_shed_log

    cdef void watching(self, long long bit) noexcept
    cdef void not_watching(self, long long bit) noexcept
    cdef void end_aside(self, long long bit) noexcept
    cdef bint stand_aside(self, long long bit, double now) noexcept
    cdef bint balance(self, long long bit) noexcept
    cdef void keep_a_spare(self, double now) noexcept
    cdef void called_back(self) noexcept
    cdef int responsive_others(self, long long bit, double now) noexcept
    cdef void call_back(self, long long bit, long long fewer_than) noexcept
    cdef bint shed(self, int listen_fd, double now)
    cdef void close_in_child(self) noexcept

    cdef inline bint balancing(self) noexcept:
        return self.nudge_fd >= 0

    cdef inline bint someone_aside(self) noexcept:
        """Some worker stands aside from a listener: see keep_a_spare (once per turn)."""
        return self.nudge_fd >= 0 and self.shared.header.aside != 0


cdef AcceptPolicy accept_policy(SharedState shared, int slot, bint balancing)
