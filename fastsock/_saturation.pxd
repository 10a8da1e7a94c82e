# How full a worker is: fastsock_saturation's definition (_saturation.pyx), in one place.

from fastsock._shared cimport Slot

cdef void sample(Slot* s, double busy, double wall, object pool, long long in_app,
                 long long limit_concurrency, list listeners)
cdef double worker_now(double busy, double wall, long long pool_jobs, long long pool_threads,
                       long long in_app, long long limit_concurrency, long long queue,
                       long long queue_limit) noexcept nogil
cdef double smoothed(double previous, double value, double dt) noexcept nogil
