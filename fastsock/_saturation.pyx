# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""How full a worker is: the definition of fastsock_saturation (docs/saturation.md).

Once a tick each worker takes the largest of five fractions, each 1.0 where what it measures
can take no more work:
- loop: the share of the tick its loop was busy, not waiting for events (a CPU-bound or a
  blocking inline handler, or more requests than one core serves);
- CPU: the process's CPU time over the tick, every thread (a Python process does about one
  core's work at most: its threads take turns holding the GIL);
- pool: the most jobs its thread pool held at once in the tick, running or queued, over its
  threads;
- app: the most requests it had in the app at once in the tick over --limit-concurrency, when
  set (async handlers waiting on a dependency whose capacity the limit states);
- accept: connections waiting in its listener's accept queue over the queue's limit.
The largest, because any one of them full is enough to turn work away or make it wait; the
most at once, not the mean, because a limit refuses at its peaks. It is smoothed over about
SMOOTHING seconds, so that one busy tick is not a full worker; but a worker that refused a
request or shed a connection in the tick could take no more: it reads 1.0 at once. The
server's figure is the mean over its serving workers (connections go to the least busy), a
worker whose loop has not ticked for STUCK_AFTER seconds (stuck in a handler) counting as full.
"""
from libc.math cimport exp

from fastsock._listener cimport Listener
from fastsock._shared cimport Slot, N_LISTENERS
from fastsock._sys cimport process_cpu

SMOOTHING = 5.0         # seconds: the time constant of the moving average
STUCK_AFTER = 3.0       # seconds without a tick: the worker's loop is held (a tick is <= 1 s)
cdef double _SMOOTHING = SMOOTHING


cdef inline long long _refused(Slot* s) noexcept:
    return s.refused_concurrency + s.refused_pool + s.shed_fds


cdef void start_marks(TickMarks* m, Slot* s, double now, double idle) noexcept:
    """A worker's loop starts: its slot's saturation is its own (not a dead predecessor's)."""
    m.at, m.idle, m.cpu, m.refused = now, idle, process_cpu(), _refused(s)
    s.saturation = 0


cdef void sample(Slot* s, TickMarks* m, double now, double idle, object pool,
                 long long in_app_peak, long long limit_concurrency, list listeners):
    """A worker's tick: its figures into its slot, and its saturation over the tick into the
    moving average. pool: its Runner (thread_jobs, jobs_peak, threads, open_tasks()) or None;
    listeners: its Listeners, main first."""
    cdef Listener listener
    cdef int tag
    cdef long long queue = 0, limit = 0, length, most, pool_peak = 0
    cdef double wall = now - m.at, busy = wall - (idle - m.idle), cpu = process_cpu()
    cdef long long refused = _refused(s)
    s.busy += max(busy, 0.0)
    if pool is not None:
        s.pool_jobs, s.pool_threads, pool_peak = pool.thread_jobs, pool.threads, pool.jobs_peak
        pool.jobs_peak = s.pool_jobs
        s.tasks = pool.open_tasks()
    for tag in range(N_LISTENERS):
        listener = listeners[tag] if tag < len(listeners) else None
        if listener is None or not listener.accept_queue(&length, &most):
            s.accept_limit[tag] = -1
            continue
        # the limit last: a scrape between these stores sees the figures of one socket
        s.accept_cookie[tag], s.accept_queue[tag], s.accept_limit[tag] = \
            listener.cookie, length, most
        if length * limit >= queue * most:
            queue, limit = length, most         # the fullest
    if refused > m.refused:
        s.saturation = 1.0
    else:
        s.saturation = smoothed(s.saturation, worker_now(
            busy, cpu - m.cpu, wall, pool_peak, s.pool_threads, in_app_peak, limit_concurrency,
            queue, limit), wall)
    m.at, m.idle, m.cpu, m.refused = now, idle, cpu, refused


cdef inline double _fraction(double part, double whole) noexcept nogil:
    if whole <= 0 or part <= 0:
        return 0.0
    return 1.0 if part >= whole else part / whole


cdef double worker_now(double busy, double cpu, double wall, long long pool_peak,
                       long long pool_threads, long long in_app_peak,
                       long long limit_concurrency, long long queue,
                       long long queue_limit) noexcept nogil:
    """The worker's saturation over the last tick (wall seconds), unsmoothed; 0 for a figure
    it lacks (no pool, no limit, no TCP listener)."""
    cdef double s = _fraction(busy, wall)
    s = max(s, _fraction(cpu, wall))
    s = max(s, _fraction(pool_peak, pool_threads))
    s = max(s, _fraction(in_app_peak, limit_concurrency))
    return max(s, _fraction(queue, queue_limit))


cdef double smoothed(double previous, double value, double dt) noexcept nogil:
    """An exponential moving average with time constant SMOOTHING, over a step of dt seconds
    (ticks are not evenly spaced: a busy loop ticks late)."""
    cdef double keep
    if dt <= 0:
        return previous
    keep = exp(-dt / _SMOOTHING)
    return previous * keep + value * (1.0 - keep)


def worker(double saturation, double heartbeat, double now):
    """A serving worker's saturation as its slot says it (at its last tick), or 1.0 when its
    loop has not ticked for STUCK_AFTER seconds: it is held in a handler."""
    return 1.0 if now - heartbeat > STUCK_AFTER else saturation


def server(workers, double now):
    """The server's saturation: the mean of its serving workers' (worker() of each
    (saturation, heartbeat)); None without any."""
    cdef double total = 0.0
    cdef int n = 0
    for saturation, heartbeat in workers:
        total += worker(saturation, heartbeat, now)
        n += 1
    return total / n if n else None


# for tests: the C functions, from Python
def worker_value(double busy, double cpu, double wall, long long pool_peak,
                 long long pool_threads, long long in_app_peak, long long limit_concurrency,
                 long long queue, long long queue_limit):
    return worker_now(busy, cpu, wall, pool_peak, pool_threads, in_app_peak, limit_concurrency,
                      queue, queue_limit)


def smooth(double previous, double value, double dt):
    return smoothed(previous, value, dt)
