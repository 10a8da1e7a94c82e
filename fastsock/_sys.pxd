# The Linux calls the event loop makes: epoll, sockets, clocks.

cdef extern from "<errno.h>" nogil:
    int errno
    enum:
        EAGAIN
        EINTR
        EMFILE
        ENFILE
        ECONNABORTED
        EPROTO

cdef extern from "<sys/epoll.h>" nogil:
    ctypedef union epoll_data_t:
        void* ptr
        int fd
        unsigned int u32
        unsigned long long u64
    struct epoll_event:
        unsigned int events
        epoll_data_t data
    enum:
        EPOLLIN
        EPOLLOUT
        EPOLLERR
        EPOLLHUP
        EPOLLRDHUP
        EPOLL_CTL_ADD
        EPOLL_CTL_MOD
        EPOLL_CTL_DEL
        EPOLL_CLOEXEC
        EPOLLEXCLUSIVE
        EPOLLET
    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event* event)
    int epoll_wait(int epfd, epoll_event* events, int maxevents, int timeout)

cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    struct sockaddr:
        unsigned short sa_family
    struct sockaddr_storage:
        unsigned short ss_family
    enum:
        SOCK_NONBLOCK
        SOCK_CLOEXEC
        MSG_NOSIGNAL
        MSG_PEEK
        SHUT_WR
        AF_INET
        AF_INET6
    ssize_t recv(int fd, void* buf, size_t n, int flags)
    ssize_t send(int fd, const void* buf, size_t n, int flags)
    struct iovec:
        void* iov_base
        size_t iov_len
    struct msghdr:                      # the fields used; the rest are zeroed
        iovec* msg_iov
        size_t msg_iovlen
    ssize_t sendmsg(int fd, const msghdr* msg, int flags)
    int accept4(int fd, sockaddr* addr, socklen_t* addrlen, int flags)
    int getsockopt(int fd, int level, int name, void* value, socklen_t* length)
    enum:
        SOL_SOCKET
        SO_COOKIE
    int shutdown(int fd, int how)

cdef extern from "<unistd.h>" nogil:
    int close(int fd)
    ssize_t read(int fd, void* buf, size_t n)
    ssize_t write(int fd, const void* buf, size_t n)

cdef extern from "<fcntl.h>" nogil:
    int open(const char* path, int flags)
    enum:
        O_RDONLY
        O_CLOEXEC

cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    struct timespec:
        time_t tv_sec
        long tv_nsec
    enum:
        CLOCK_MONOTONIC
        CLOCK_THREAD_CPUTIME_ID
        CLOCK_PROCESS_CPUTIME_ID
    int clock_gettime(int clk, timespec* ts)

cdef extern from "<netinet/in.h>" nogil:
    struct in_addr:
        unsigned int s_addr
    struct in6_addr:
        unsigned char s6_addr[16]
    struct sockaddr_in:
        unsigned short sin_family
        unsigned short sin_port
        in_addr sin_addr
    struct sockaddr_in6:
        unsigned short sin6_family
        unsigned short sin6_port
        in6_addr sin6_addr
    unsigned short ntohs(unsigned short)

cdef extern from "<netinet/tcp.h>" nogil:
    enum:
        IPPROTO_TCP "IPPROTO_TCP"
        TCP_INFO
    struct tcp_info:            # the fields read; on a listening socket, unacked is its accept
        unsigned char tcpi_state    # queue's length and sacked its limit (the backlog)
        unsigned int tcpi_unacked
        unsigned int tcpi_sacked

cdef extern from "<arpa/inet.h>" nogil:
    const char* inet_ntop(int af, const void* src, char* dst, socklen_t size)


cdef inline double monotonic() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef inline double thread_cpu() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef inline double process_cpu() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef extern from "<sys/eventfd.h>" nogil:
    int eventfd(unsigned int initval, int flags)
    int EFD_NONBLOCK
    int EFD_CLOEXEC


cdef extern from * nogil:
    # GCC builtins: full barriers, on memory shared between processes
    bint __sync_bool_compare_and_swap(long long* ptr, long long old, long long new)
    void __sync_lock_release(long long* ptr)
    long long __sync_fetch_and_add(long long* ptr, long long value)
    int __builtin_popcountll(unsigned long long x)     # set bits
