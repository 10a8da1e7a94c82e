# The time the worker's thread spends in the steps of its asyncio tasks (see _steps.pyx).

cdef class StepClock:
    cdef public double seconds      # wall time inside task steps, summed since start-up


cdef class TimedCoroutine:
    cdef StepClock clock
    cdef object coro
    cdef object __weakref__         # weakly referenced as the coroutine itself can be
