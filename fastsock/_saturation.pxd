# How full a worker is: fastsock_saturation's definition (_saturation.pyx), in one place.

from fastsock._shared cimport Slot

cdef struct TickMarks:          # a worker's figures at its last tick, to take the next from
    double at                   # the loop's clock
    double idle                 # its idle seconds (waiting for events)
    double cpu                  # the process's CPU seconds, every thread
    long long refused           # requests refused and connections shed

cdef void start_marks(TickMarks* m, Slot* s, double now, double idle) noexcept
cdef void sample(Slot* s, TickMarks* m, double now, double idle, object pool,
                 long long in_app_peak, long long limit_concurrency, list listeners)
cdef double worker_now(double busy, double cpu, double wall, long long pool_peak,
                       long long pool_threads, long long in_app_peak,
                       long long limit_concurrency, long long queue,
                       long long queue_limit) noexcept nogil
cdef double smoothed(double previous, double value, double dt) noexcept nogil
