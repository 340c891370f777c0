/*
 * kaudit_redirect.c -- put an unmodified program's NETLINK_AUDIT socket in front of the
 * kaudit simulator.
 *
 * Preloaded (LD_PRELOAD) into a dynamically linked program, this library turns
 * socket(AF_NETLINK, SOCK_RAW|SOCK_DGRAM [|flags], NETLINK_AUDIT) into a connection to the
 * simulator endpoint named by $KAUDIT_ENDPOINT ("unix:PATH" or "PATH"), and gives the socket
 * calls on that descriptor the semantics of a netlink socket.  Every other descriptor is
 * left alone (the real functions come from dlsym(RTLD_NEXT)); without $KAUDIT_ENDPOINT the
 * program talks to the real kernel.
 *
 * Why it looks the way it does:
 *
 *  - The endpoint (simulator/endpoint.py, collector/transport.py) is a unix SOCK_SEQPACKET
 *    socket; each packet, both ways, is a 4-byte little-endian sender port id and one
 *    netlink datagram.  Packets with the port id 0xFFFFFFFF are endpoint control messages
 *    (a NLMSG_NOOP whose payload is "KAUDITC1", op, arg, value, error): they carry what a
 *    byte stream cannot -- bind(nl_pid, nl_groups), setsockopt(NETLINK_ADD_MEMBERSHIP ...),
 *    getsockname, and pending socket errors such as ENOBUFS.  The program never sees them.
 *
 *  - The program's descriptor *is* the unix socket, so poll/select/epoll work natively.
 *    That is why nothing is buffered in user space on the common paths: a control request
 *    that needs an answer (bind, membership, a getsockname whose port id is unknown) is
 *    sent where no data can be queued yet.  Should data overtake an answer anyway, it is
 *    kept in a small stash and one extra control request is sent, whose answer keeps the
 *    descriptor readable until the stash is empty.
 *
 *  - The kernel handles a request inside sendmsg(): when sendto() returns, the ACK and the
 *    reply are already queued.  Programs rely on that (a non-blocking read straight after
 *    the send), so after each datagram the shim sends an empty datagram -- which the
 *    kernel, and the simulator, ignore -- and waits until the endpoint has consumed both
 *    (SIOCOUTQ == 0): the endpoint handles packets in order, so the replies are queued.
 *
 *  - The endpoint going away is not something a kernel does.  The program then gets
 *    ECONNREFUSED from every call on that socket (the errno netlink gives when nobody
 *    listens at the other end), one line on stderr says so, and with
 *    KAUDIT_ON_CLOSE=term the process is also sent SIGTERM so that a daemon stops cleanly.
 *    A missing endpoint makes socket() fail with ECONNREFUSED, named on stderr.
 *
 * Environment: KAUDIT_ENDPOINT, KAUDIT_ON_CLOSE (errno|term), KAUDIT_TIMEOUT_MS (how long
 * to wait for the endpoint's answers, default 5000), KAUDIT_REDIRECT_DEBUG=1 (trace).
 *
 * Limits: statically linked programs and Go programs make their system calls without libc
 * and cannot be reached this way (docs/wrap.md).  recvmmsg/sendmmsg, readv/writev, ioctl
 * and socket filters are not translated; a descriptor inherited across execve() is a
 * plain unix socket in the new program.
 *
 * Build: cc -Wall -Wextra -O2 -fPIC -shared -o kaudit_redirect.so kaudit_redirect.c -ldl -pthread
 */

#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/netlink.h>
#include <linux/sockios.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifndef NETLINK_AUDIT
#define NETLINK_AUDIT 9
#endif
#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif
#ifndef NETLINK_CAP_ACK
#define NETLINK_CAP_ACK 10
#endif
#ifndef NETLINK_EXT_ACK
#define NETLINK_EXT_ACK 11
#endif
#ifndef NETLINK_GET_STRICT_CHK
#define NETLINK_GET_STRICT_CHK 12
#endif
#ifndef NETLINK_LIST_MEMBERSHIPS
#define NETLINK_LIST_MEMBERSHIPS 9
#endif
#ifndef NETLINK_LISTEN_ALL_NSID
#define NETLINK_LISTEN_ALL_NSID 8
#endif

#define KR_EXPORT __attribute__((visibility("default")))

/* --- the endpoint wire protocol (collector/transport.py) ------------------------------------ */

#define KR_CONTROL_PORT 0xFFFFFFFFu
#define KR_OP_BIND 1u
#define KR_OP_SETSOCKOPT 2u
#define KR_OP_GETSOCKNAME 3u
#define KR_OP_RESULT 0x80u
#define KR_OP_SOCKERR 0x90u
#define KR_MAGIC "KAUDITC1"
#define KR_PREFIX 4
#define KR_CTL_PAYLOAD 24
#define KR_CTL_PACKET (KR_PREFIX + NLMSG_HDRLEN + KR_CTL_PAYLOAD)
#define KR_PEEK 64
#define AUDIT_REPLACE_TYPE 1329
#define AUDIT_FIRST_RECORD 1100
#define AUDIT_NLGRP_READLOG_MASK 1u

struct kr_ctl {
    uint32_t op;
    uint32_t arg;
    uint32_t value;
    int32_t error;
};

struct kr_pkt {
    struct kr_pkt *next;
    size_t len; /* prefix included */
    unsigned char data[];
};

/* One redirected socket; shared by the descriptors dup()ed from it. */
struct kr_sock {
    int refs; /* table slots + calls in flight; guarded by kr_table_lock */
    pthread_mutex_t lock;
    dev_t dev;
    ino_t ino;
    int type; /* SOCK_RAW or SOCK_DGRAM, as created */
    uint32_t port_id;
    uint32_t groups;
    int bound;
    int port_known; /* port_id is what the endpoint thinks it is */
    uint32_t dst_pid;
    uint32_t dst_group;
    unsigned pending_async; /* control answers still to come that nobody waits for */
    int pending_err;        /* sk_err: reported by the next receive */
    int dead;
    int opts[16]; /* SOL_NETLINK flags by option number */
    struct kr_pkt *stash_head, *stash_tail;
    char endpoint[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

/* --- the real functions -------------------------------------------------------------------- */

typedef int (*socket_fn)(int, int, int);
typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);
typedef int (*getname_fn)(int, struct sockaddr *, socklen_t *);
typedef ssize_t (*sendto_fn)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
typedef ssize_t (*sendmsg_fn)(int, const struct msghdr *, int);
typedef ssize_t (*send_fn)(int, const void *, size_t, int);
typedef ssize_t (*recvfrom_fn)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
typedef ssize_t (*recvmsg_fn)(int, struct msghdr *, int);
typedef ssize_t (*recv_fn)(int, void *, size_t, int);
typedef int (*setsockopt_fn)(int, int, int, const void *, socklen_t);
typedef int (*getsockopt_fn)(int, int, int, void *, socklen_t *);
typedef int (*close_fn)(int);
typedef ssize_t (*read_fn)(int, void *, size_t);
typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef int (*dup_fn)(int);
typedef int (*dup2_fn)(int, int);
typedef int (*dup3_fn)(int, int, int);
typedef int (*fcntl_fn)(int, int, ...);
typedef int (*connect_fn)(int, const struct sockaddr *, socklen_t);
typedef int (*shutdown_fn)(int, int);
typedef int (*close_range_fn)(unsigned int, unsigned int, int);
typedef void (*closefrom_fn)(int);
typedef int (*poll_fn)(struct pollfd *, nfds_t, int);

static void *kr_sym(const char *name)
{
    void *p = dlsym(RTLD_NEXT, name);
    if (p == NULL) {
        static const char msg[] = "kaudit-redirect: cannot find the C library's socket functions\n";
        long unused = syscall(SYS_write, 2, msg, sizeof msg - 1);
        (void)unused;
        abort();
    }
    return p;
}

#define REAL(fn, type)                                                                       \
    static type real_##fn##_get(void)                                                        \
    {                                                                                        \
        static type cached;                                                                  \
        type p = __atomic_load_n(&cached, __ATOMIC_ACQUIRE);                                 \
        if (p == NULL) {                                                                     \
            p = (type)kr_sym(#fn);                                                           \
            __atomic_store_n(&cached, p, __ATOMIC_RELEASE);                                  \
        }                                                                                    \
        return p;                                                                            \
    }

REAL(socket, socket_fn)
REAL(bind, bind_fn)
REAL(getsockname, getname_fn)
REAL(getpeername, getname_fn)
REAL(sendto, sendto_fn)
REAL(sendmsg, sendmsg_fn)
REAL(send, send_fn)
REAL(recvfrom, recvfrom_fn)
REAL(recvmsg, recvmsg_fn)
REAL(recv, recv_fn)
REAL(setsockopt, setsockopt_fn)
REAL(getsockopt, getsockopt_fn)
REAL(close, close_fn)
REAL(read, read_fn)
REAL(write, write_fn)
REAL(dup, dup_fn)
REAL(dup2, dup2_fn)
REAL(dup3, dup3_fn)
REAL(fcntl, fcntl_fn)
REAL(connect, connect_fn)
REAL(shutdown, shutdown_fn)
REAL(poll, poll_fn)

/* close_range/closefrom/fcntl64 may be missing from an older C library: optional. */
static void *kr_optional(const char *name) { return dlsym(RTLD_NEXT, name); }

/* --- messages ------------------------------------------------------------------------------ */

static void kr_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void kr_say(const char *fmt, ...)
{
    char line[512];
    int saved = errno;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0) {
        errno = saved;
        return;
    }
    if ((size_t)n > sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    ssize_t unused = real_write_get()(2, line, (size_t)n);
    (void)unused;
    errno = saved;
}

static int kr_debug(void)
{
    static int v = -1;
    if (v < 0) {
        const char *e = getenv("KAUDIT_REDIRECT_DEBUG");
        v = (e != NULL && *e != '\0' && strcmp(e, "0") != 0);
    }
    return v;
}

#define DEBUG(...)                                                                           \
    do {                                                                                     \
        if (kr_debug())                                                                      \
            kr_say("kaudit-redirect[debug]: " __VA_ARGS__);                                  \
    } while (0)

static int kr_timeout_ms(void)
{
    const char *e = getenv("KAUDIT_TIMEOUT_MS");
    if (e != NULL && *e != '\0') {
        long v = strtol(e, NULL, 10);
        if (v > 0 && v < INT_MAX)
            return (int)v;
    }
    return 5000;
}

/* Things the simulator does not model are said once per process, not once per call. */
static void kr_note_once(unsigned bit, const char *what)
{
    static unsigned said;
    if (__atomic_fetch_or(&said, bit, __ATOMIC_RELAXED) & bit)
        return;
    kr_say("kaudit-redirect: %s", what);
}

/* --- the descriptor table ------------------------------------------------------------------ */

#define KR_CHUNK_BITS 10
#define KR_CHUNK (1 << KR_CHUNK_BITS)
#define KR_CHUNKS 1024
#define KR_MAX_FD (KR_CHUNK * KR_CHUNKS)

static struct kr_sock **kr_chunks[KR_CHUNKS];
static pthread_mutex_t kr_table_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t kr_atfork_once = PTHREAD_ONCE_INIT;

static void kr_prefork(void) { pthread_mutex_lock(&kr_table_lock); }
static void kr_postfork(void) { pthread_mutex_unlock(&kr_table_lock); }
static void kr_atfork_init(void) { pthread_atfork(kr_prefork, kr_postfork, kr_postfork); }

static struct kr_sock **kr_slot(int fd, int create)
{
    if (fd < 0 || fd >= KR_MAX_FD)
        return NULL;
    struct kr_sock **chunk = __atomic_load_n(&kr_chunks[fd >> KR_CHUNK_BITS], __ATOMIC_ACQUIRE);
    if (chunk == NULL) {
        if (!create)
            return NULL;
        chunk = calloc(KR_CHUNK, sizeof *chunk); /* never freed: slots may be read lock-free */
        if (chunk == NULL)
            return NULL;
        __atomic_store_n(&kr_chunks[fd >> KR_CHUNK_BITS], chunk, __ATOMIC_RELEASE);
    }
    return &chunk[fd & (KR_CHUNK - 1)];
}

static void kr_free(struct kr_sock *s)
{
    struct kr_pkt *p = s->stash_head;
    while (p != NULL) {
        struct kr_pkt *next = p->next;
        free(p);
        p = next;
    }
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* KAUDIT_ON_CLOSE=term: raised once no lock of ours is held (a handler may use the socket). */
static int kr_term_pending;

static void kr_put(struct kr_sock *s)
{
    if (s != NULL) {
        pthread_mutex_lock(&kr_table_lock);
        int left = --s->refs;
        pthread_mutex_unlock(&kr_table_lock);
        if (left == 0)
            kr_free(s);
    }
    if (__atomic_load_n(&kr_term_pending, __ATOMIC_RELAXED) == 1 &&
        __atomic_exchange_n(&kr_term_pending, 2, __ATOMIC_RELAXED) == 1) {
        int e = errno;
        kill(getpid(), SIGTERM);
        errno = e;
    }
}

/* Remove fd's entry from the table; the caller owns the returned reference. */
static struct kr_sock *kr_take(int fd)
{
    struct kr_sock **slot = kr_slot(fd, 0);
    if (slot == NULL || __atomic_load_n(slot, __ATOMIC_RELAXED) == NULL)
        return NULL;
    pthread_mutex_lock(&kr_table_lock);
    struct kr_sock *s = *slot;
    __atomic_store_n(slot, NULL, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&kr_table_lock);
    return s;
}

static int kr_install(int fd, struct kr_sock *s)
{
    pthread_once(&kr_atfork_once, kr_atfork_init);
    pthread_mutex_lock(&kr_table_lock);
    struct kr_sock **slot = kr_slot(fd, 1);
    if (slot == NULL) {
        pthread_mutex_unlock(&kr_table_lock);
        return -1;
    }
    struct kr_sock *old = *slot;
    s->refs++;
    __atomic_store_n(slot, s, __ATOMIC_RELEASE);
    int left = old != NULL ? --old->refs : 1;
    pthread_mutex_unlock(&kr_table_lock);
    if (left == 0)
        kr_free(old);
    return 0;
}

/*
 * The entry for fd with a reference held, or NULL (a plain descriptor).  An entry whose
 * descriptor was closed behind our back (a raw syscall, a close_range we did not see) and
 * reused for something else is recognised by its inode and dropped.
 */
static struct kr_sock *kr_get(int fd)
{
    struct kr_sock **slot = kr_slot(fd, 0);
    if (slot == NULL || __atomic_load_n(slot, __ATOMIC_ACQUIRE) == NULL)
        return NULL; /* the fast path every other descriptor takes */
    pthread_mutex_lock(&kr_table_lock);
    struct kr_sock *s = *slot;
    if (s != NULL)
        s->refs++;
    pthread_mutex_unlock(&kr_table_lock);
    if (s == NULL)
        return NULL;
    struct stat st;
    int saved = errno;
    int same = fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == s->dev && st.st_ino == s->ino;
    errno = saved;
    if (!same) {
        pthread_mutex_lock(&kr_table_lock);
        if (*slot == s) {
            __atomic_store_n(slot, NULL, __ATOMIC_RELEASE);
            s->refs--;
        }
        pthread_mutex_unlock(&kr_table_lock);
        kr_put(s);
        return NULL;
    }
    return s;
}

static void kr_drop_range(unsigned first, unsigned last)
{
    if (last >= (unsigned)KR_MAX_FD)
        last = KR_MAX_FD - 1;
    for (unsigned c = first >> KR_CHUNK_BITS; c <= (last >> KR_CHUNK_BITS) && c < KR_CHUNKS; c++) {
        if (__atomic_load_n(&kr_chunks[c], __ATOMIC_ACQUIRE) == NULL)
            continue;
        unsigned lo = c << KR_CHUNK_BITS, hi = lo + KR_CHUNK - 1;
        if (lo < first)
            lo = first;
        if (hi > last)
            hi = last;
        for (unsigned fd = lo; fd <= hi; fd++)
            kr_put(kr_take((int)fd));
    }
}

/* --- packets ------------------------------------------------------------------------------- */

static void kr_put_le32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static uint32_t kr_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int kr_ctl_decode(const unsigned char *pkt, size_t len, struct kr_ctl *c)
{
    struct nlmsghdr h;
    if (len < KR_CTL_PACKET)
        return -1;
    memcpy(&h, pkt + KR_PREFIX, sizeof h);
    if (h.nlmsg_type != NLMSG_NOOP || memcmp(pkt + KR_PREFIX + NLMSG_HDRLEN, KR_MAGIC, 8) != 0)
        return -1;
    const unsigned char *b = pkt + KR_PREFIX + NLMSG_HDRLEN + 8;
    memcpy(&c->op, b, 4);
    memcpy(&c->arg, b + 4, 4);
    memcpy(&c->value, b + 8, 4);
    memcpy(&c->error, b + 12, 4);
    return 0;
}

/* The endpoint closed the connection: every later call fails with ECONNREFUSED. */
static void kr_mark_dead(struct kr_sock *s, int fd, const char *how)
{
    if (s->dead)
        return;
    s->dead = 1;
    const char *mode = getenv("KAUDIT_ON_CLOSE");
    int term = mode != NULL && strcmp(mode, "term") == 0;
    kr_say("kaudit-redirect: the simulator endpoint unix:%s %s (netlink socket fd %d); its calls now fail "
           "with ECONNREFUSED%s",
           s->endpoint, how, fd, term ? "; sending SIGTERM to this process (KAUDIT_ON_CLOSE=term)" : "");
    if (term) {
        int none = 0;
        __atomic_compare_exchange_n(&kr_term_pending, &none, 1, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    }
}

/* An empty read: the peer has gone (POLLHUP), or it was an empty packet (never sent by the
   endpoint, but not a reason to give up). */
static int kr_peer_closed(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
    return real_poll_get()(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLRDHUP));
}

/* nl_groups of the sender address: the group a multicast copy was sent to.  A record with
   its true nlmsg_len reaches a member socket only as the multicast copy (the daemon's
   unicast copy carries the short length). */
static uint32_t kr_sender_groups(uint32_t groups, const unsigned char *body, size_t have, size_t len)
{
    struct nlmsghdr h;
    if (groups == 0 || have < sizeof h)
        return 0;
    memcpy(&h, body, sizeof h);
    if (h.nlmsg_type >= AUDIT_FIRST_RECORD && h.nlmsg_type != AUDIT_REPLACE_TYPE && h.nlmsg_len == len)
        return AUDIT_NLGRP_READLOG_MASK;
    return 0;
}

static int kr_send_ctl(struct kr_sock *s, int fd, uint32_t op, uint32_t arg, uint32_t value)
{
    unsigned char pkt[KR_CTL_PACKET];
    struct nlmsghdr h = {.nlmsg_len = NLMSG_HDRLEN + KR_CTL_PAYLOAD, .nlmsg_type = NLMSG_NOOP};
    int32_t error = 0;
    kr_put_le32(pkt, KR_CONTROL_PORT);
    memcpy(pkt + KR_PREFIX, &h, sizeof h);
    memcpy(pkt + KR_PREFIX + NLMSG_HDRLEN, KR_MAGIC, 8);
    memcpy(pkt + KR_PREFIX + NLMSG_HDRLEN + 8, &op, 4);
    memcpy(pkt + KR_PREFIX + NLMSG_HDRLEN + 12, &arg, 4);
    memcpy(pkt + KR_PREFIX + NLMSG_HDRLEN + 16, &value, 4);
    memcpy(pkt + KR_PREFIX + NLMSG_HDRLEN + 20, &error, 4);
    for (;;) {
        ssize_t n = real_send_get()(fd, pkt, sizeof pkt, MSG_NOSIGNAL);
        if (n == (ssize_t)sizeof pkt)
            return 0;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            if (real_poll_get()(&p, 1, kr_timeout_ms()) > 0)
                continue;
            return -ETIMEDOUT;
        }
        if (n < 0 && (errno == EPIPE || errno == ECONNRESET || errno == ENOTCONN)) {
            kr_mark_dead(s, fd, "has closed the connection");
            return -ECONNREFUSED;
        }
        return n < 0 ? -errno : -EIO;
    }
}

/* A control answer: the endpoint's view of our port id and groups is the truth. */
static void kr_take_result(struct kr_sock *s, const struct kr_ctl *c)
{
    s->port_id = c->arg;
    s->groups = c->value;
    s->bound = c->arg != 0;
    s->port_known = 1;
}

static void kr_take_sockerr(struct kr_sock *s, const struct kr_ctl *c)
{
    int err = c->error < 0 ? -c->error : c->error;
    if (err == 0)
        return;
    if (err == ENOBUFS && s->opts[NETLINK_NO_ENOBUFS])
        return; /* NETLINK_NO_ENOBUFS: the kernel does not report the overrun */
    s->pending_err = err;
}

static void kr_stash(struct kr_sock *s, struct kr_pkt *p)
{
    p->next = NULL;
    if (s->stash_tail != NULL)
        s->stash_tail->next = p;
    else
        s->stash_head = p;
    s->stash_tail = p;
}

/*
 * Wait (s->lock held) for the next control answer that somebody waits for; data that
 * arrives first is stashed.  0 with *out filled, or -errno.
 */
static int kr_wait_result(struct kr_sock *s, int fd, struct kr_ctl *out)
{
    int timeout = kr_timeout_ms();
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long spent = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
        if (spent >= timeout)
            return -ETIMEDOUT;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = real_poll_get()(&p, 1, (int)(timeout - spent));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            return -ETIMEDOUT;
        ssize_t size = real_recv_get()(fd, NULL, 0, MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT);
        if (size < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            continue;
        if (size < 0)
            return -errno;
        if (size == 0) {
            if (kr_peer_closed(fd)) {
                kr_mark_dead(s, fd, "has closed the connection");
                return -ECONNREFUSED;
            }
            char c;
            (void)real_recv_get()(fd, &c, 1, MSG_DONTWAIT);
            continue;
        }
        struct kr_pkt *pkt = malloc(sizeof *pkt + (size_t)size);
        if (pkt == NULL)
            return -ENOMEM;
        ssize_t n = real_recv_get()(fd, pkt->data, (size_t)size, MSG_DONTWAIT);
        if (n < KR_PREFIX) {
            free(pkt);
            if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                return -errno;
            continue;
        }
        pkt->len = (size_t)n;
        if (kr_le32(pkt->data) == KR_CONTROL_PORT) {
            struct kr_ctl c;
            int bad = kr_ctl_decode(pkt->data, pkt->len, &c);
            free(pkt);
            if (bad)
                continue;
            if (c.op == KR_OP_SOCKERR) {
                kr_take_sockerr(s, &c);
                continue;
            }
            if (c.op & KR_OP_RESULT) {
                kr_take_result(s, &c);
                if (s->pending_async > 0) {
                    s->pending_async--;
                    continue;
                }
                *out = c;
                return 0;
            }
            continue;
        }
        kr_stash(s, pkt); /* data that overtook the answer */
    }
}

/* After a synchronous exchange: keep the descriptor readable while the stash holds data. */
static void kr_keep_readable(struct kr_sock *s, int fd)
{
    if ((s->stash_head != NULL || s->pending_err) && !s->dead) {
        if (kr_send_ctl(s, fd, KR_OP_GETSOCKNAME, 0, 0) == 0)
            s->pending_async++;
    }
}

/* One request/answer exchange with the endpoint (s->lock held): the answer's error, or -errno. */
static int kr_control(struct kr_sock *s, int fd, uint32_t op, uint32_t arg, uint32_t value)
{
    if (s->dead)
        return -ECONNREFUSED;
    int err = kr_send_ctl(s, fd, op, arg, value);
    if (err)
        return err;
    struct kr_ctl c;
    err = kr_wait_result(s, fd, &c);
    kr_keep_readable(s, fd);
    if (err == -ETIMEDOUT)
        kr_say("kaudit-redirect: the simulator endpoint unix:%s did not answer within %d ms", s->endpoint,
               kr_timeout_ms());
    return err ? err : c.error;
}

/* The port id, resolved with the endpoint when a send has autobound the socket meanwhile. */
static void kr_sync_name(struct kr_sock *s, int fd)
{
    if (!s->port_known && !s->dead)
        (void)kr_control(s, fd, KR_OP_GETSOCKNAME, 0, 0);
}

/* --- opening ------------------------------------------------------------------------------- */

static const char *kr_endpoint(void)
{
    const char *e = getenv("KAUDIT_ENDPOINT");
    if (e == NULL || *e == '\0')
        return NULL;
    if (strncmp(e, "unix:", 5) == 0)
        e += 5;
    return *e != '\0' ? e : NULL;
}

static int kr_open(const char *path, int type)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    size_t plen = strlen(path);
    if (plen >= sizeof sun.sun_path) {
        kr_say("kaudit-redirect: the endpoint path %s is longer than a unix socket path may be (%zu bytes); "
               "NETLINK_AUDIT socket refused with ECONNREFUSED",
               path, sizeof sun.sun_path - 1);
        errno = ECONNREFUSED;
        return -1;
    }
    memcpy(sun.sun_path, path, plen + 1);
    int fd = real_socket_get()(AF_UNIX, SOCK_SEQPACKET | (type & SOCK_CLOEXEC), 0);
    if (fd < 0)
        return -1;
    int r;
    do {
        r = real_connect_get()(fd, (struct sockaddr *)&sun, sizeof sun);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        int e = errno;
        real_close_get()(fd);
        kr_say("kaudit-redirect: no simulator endpoint at unix:%s (%s); NETLINK_AUDIT socket refused with "
               "ECONNREFUSED",
               path, strerror(e));
        errno = ECONNREFUSED;
        return -1;
    }
    if (fd >= KR_MAX_FD) {
        real_close_get()(fd);
        errno = EMFILE;
        return -1;
    }
    struct kr_sock *s = calloc(1, sizeof *s);
    struct stat st;
    if (s == NULL || fstat(fd, &st) != 0) {
        int e = s == NULL ? ENOMEM : errno;
        free(s);
        real_close_get()(fd);
        errno = e;
        return -1;
    }
    pthread_mutex_init(&s->lock, NULL);
    s->dev = st.st_dev;
    s->ino = st.st_ino;
    s->type = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
    s->port_known = 1;
    memcpy(s->endpoint, path, plen + 1);
    struct kr_ctl hello;
    int err = kr_wait_result(s, fd, &hello); /* the endpoint greets every connection */
    if (err) {
        kr_say("kaudit-redirect: the simulator endpoint unix:%s did not greet the connection (%s); "
               "NETLINK_AUDIT socket refused with ECONNREFUSED",
               path, strerror(-err));
        kr_free(s);
        real_close_get()(fd);
        errno = ECONNREFUSED;
        return -1;
    }
    kr_keep_readable(s, fd);
    if (type & SOCK_NONBLOCK) {
        int fl = real_fcntl_get()(fd, F_GETFL);
        real_fcntl_get()(fd, F_SETFL, fl | O_NONBLOCK);
    }
    if (kr_install(fd, s) != 0) {
        kr_free(s);
        real_close_get()(fd);
        errno = ENOMEM;
        return -1;
    }
    DEBUG("fd %d: NETLINK_AUDIT socket -> unix:%s", fd, path);
    return fd;
}

KR_EXPORT int socket(int domain, int type, int protocol)
{
    int base = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (domain == AF_NETLINK && protocol == NETLINK_AUDIT && (base == SOCK_RAW || base == SOCK_DGRAM)) {
        const char *path = kr_endpoint();
        if (path != NULL)
            return kr_open(path, type);
    }
    return real_socket_get()(domain, type, protocol);
}

/* --- addresses ----------------------------------------------------------------------------- */

static void kr_fill_addr(struct sockaddr *addr, socklen_t *len, uint32_t pid, uint32_t groups)
{
    if (addr == NULL || len == NULL)
        return;
    struct sockaddr_nl nl = {.nl_family = AF_NETLINK, .nl_pid = pid, .nl_groups = groups};
    size_t n = *len < (socklen_t)sizeof nl ? (size_t)*len : sizeof nl;
    memcpy(addr, &nl, n);
    *len = sizeof nl;
}

static int kr_check_nladdr(const struct sockaddr *addr, socklen_t len)
{
    if (addr == NULL || len < (socklen_t)sizeof(struct sockaddr_nl))
        return -EINVAL;
    if (addr->sa_family != AF_NETLINK)
        return -EINVAL;
    return 0;
}

static int kr_fail(struct kr_sock *s, int err)
{
    kr_put(s);
    errno = err;
    return -1;
}

KR_EXPORT int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    struct kr_sock *s = kr_get(fd);
    if (s == NULL)
        return real_bind_get()(fd, addr, len);
    int err = kr_check_nladdr(addr, len);
    if (err)
        return kr_fail(s, -err);
    struct sockaddr_nl nl;
    memcpy(&nl, addr, sizeof nl);
    pthread_mutex_lock(&s->lock);
    err = kr_control(s, fd, KR_OP_BIND, nl.nl_groups, nl.nl_pid);
    pthread_mutex_unlock(&s->lock);
    DEBUG("fd %d: bind(nl_pid=%u, nl_groups=%#x) -> %d, port id %u", fd, nl.nl_pid, nl.nl_groups, err, s->port_id);
    if (err)
        return kr_fail(s, -err);
    kr_put(s);
    return 0;
}

KR_EXPORT int getsockname(int fd, struct sockaddr *addr, socklen_t *len)
{
    struct kr_sock *s = kr_get(fd);
    if (s == NULL)
        return real_getsockname_get()(fd, addr, len);
    if (addr == NULL || len == NULL)
        return kr_fail(s, EFAULT);
    pthread_mutex_lock(&s->lock);
    kr_sync_name(s, fd);
    uint32_t pid = s->bound ? s->port_id : 0, groups = s->groups;
    pthread_mutex_unlock(&s->lock);
    kr_fill_addr(addr, len, pid, groups);
    kr_put(s);
    return 0;
}

KR_EXPORT int getpeername(int fd, struct sockaddr *addr, socklen_t *len)
{
    struct kr_sock *s = kr_get(fd);
    if (s == NULL)
        return real_getpeername_get()(fd, addr, len);
    if (addr == NULL || len == NULL)
        return kr_fail(s, EFAULT);
    pthread_mutex_lock(&s->lock);
    uint32_t pid = s->dst_pid, groups = s->dst_group ? 1u << (s->dst_group - 1) : 0;
    pthread_mutex_unlock(&s->lock);
    kr_fill_addr(addr, len, pid, groups);
    kr_put(s);
    return 0;
}

/* Before the first datagram of an unbound socket: autobind as netlink_sendmsg() would. */
static int kr_autobind(struct kr_sock *s, int fd)
{
    if (s->bound)
        return 0;
    if (s->groups != 0) {
        /* A bind with these groups would log the multicast join again: let the send
           autobind it on the endpoint and learn the port id when it is asked for. */
        s->port_known = 0;
        return 0;
    }
    return kr_control(s, fd, KR_OP_BIND, 0, 0);
}

KR_EXPORT int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    struct kr_sock *s = kr_get(fd);
    if (s == NULL)
        return real_connect_get()(fd, addr, len);
    if (addr == NULL || len < (socklen_t)sizeof(sa_family_t))
        return kr_fail(s, EINVAL);
    if (addr->sa_family == AF_UNSPEC) {
        pthread_mutex_lock(&s->lock);
        s->dst_pid = s->dst_group = 0;
        pthread_mutex_unlock(&s->lock);
        kr_put(s);
        return 0;
    }
    int err = kr_check_nladdr(addr, len);
    if (err)
        return kr_fail(s, -err);
    struct sockaddr_nl nl;
    memcpy(&nl, addr, sizeof nl);
    pthread_mutex_lock(&s->lock);
    err = kr_autobind(s, fd);
    if (!err) {
        s->dst_pid = nl.nl_pid;
        s->dst_group = nl.nl_groups ? (uint32_t)__builtin_ffs((int)nl.nl_groups) : 0;
    }
    pthread_mutex_unlock(&s->lock);
    if (err)
        return kr_fail(s, -err);
    kr_put(s);
    return 0;
}

KR_EXPORT int shutdown(int fd, int how)
{
    struct kr_sock *s = kr_get(fd);
    if (s == NULL)
        return real_shutdown_get()(fd, how);
    return kr_fail(s, EOPNOTSUPP); /* netlink has no shutdown (sock_no_shutdown) */
}

/* --- sending ------------------------------------------------------------------------------- */

/* Until the endpoint has consumed everything we sent (SIOCOUTQ == 0), bounded. */
static void kr_wait_consumed(int fd)
{
    int timeout_us = kr_timeout_ms() * 1000, waited = 0, step = 20;
    for (;;) {
        int queued = 0;
        if (ioctl(fd, SIOCOUTQ, &queued) != 0 || queued <= 0)
            return;
        if (waited >= timeout_us)
            return;
        struct timespec ts = {0, step * 1000L};
        nanosleep(&ts, NULL);
        waited += step;
        if (step < 1000)
            step *= 2;
    }
}

static ssize_t kr_sendmsg(struct kr_sock *s, int fd, const struct msghdr *msg, int flags)
{
    if (flags & MSG_OOB) {
        errno = EOPNOTSUPP;
        return -1;
    }
    uint32_t dst_pid, dst_group;
    pthread_mutex_lock(&s->lock);
    dst_pid = s->dst_pid;
    dst_group = s->dst_group;
    pthread_mutex_unlock(&s->lock);
    if (msg->msg_namelen) {
        int err = kr_check_nladdr(msg->msg_name, msg->msg_namelen);
        if (err) {
            errno = -err;
            return -1;
        }
        struct sockaddr_nl nl;
        memcpy(&nl, msg->msg_name, sizeof nl);
        dst_pid = nl.nl_pid;
        dst_group = nl.nl_groups ? (uint32_t)__builtin_ffs((int)nl.nl_groups) : 0;
    }
    if (dst_pid != 0 || dst_group != 0) {
        kr_note_once(1u, "sending to a netlink port other than the kernel (nl_pid != 0 or nl_groups != 0) is not "
                         "modelled by the simulator; the send fails with ECONNREFUSED");
        errno = ECONNREFUSED;
        return -1;
    }
    pthread_mutex_lock(&s->lock);
    int err = s->dead ? -ECONNREFUSED : kr_autobind(s, fd);
    uint32_t port = s->port_id;
    pthread_mutex_unlock(&s->lock);
    if (err) {
        errno = -err;
        return -1;
    }

    unsigned char prefix[KR_PREFIX];
    kr_put_le32(prefix, port == KR_CONTROL_PORT ? 0 : port);
    size_t niov = msg->msg_iovlen + 1;
    struct iovec small[9];
    struct iovec *iov = niov <= 9 ? small : malloc(niov * sizeof *iov);
    if (iov == NULL) {
        errno = ENOMEM;
        return -1;
    }
    iov[0].iov_base = prefix;
    iov[0].iov_len = sizeof prefix;
    if (msg->msg_iovlen)
        memcpy(iov + 1, msg->msg_iov, msg->msg_iovlen * sizeof *iov);
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = niov};
    ssize_t n;
    for (;;) {
        n = real_sendmsg_get()(fd, &m, MSG_NOSIGNAL | (flags & MSG_DONTWAIT));
        if (n >= 0 || errno == EINTR)
            break;
        if ((errno == EAGAIN || errno == EWOULDBLOCK) && !(flags & MSG_DONTWAIT)) {
            /* The kernel takes a request at once; the endpoint is only slow to read it. */
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            if (real_poll_get()(&p, 1, kr_timeout_ms()) > 0)
                continue;
        }
        break;
    }
    int e = errno;
    if (iov != small)
        free(iov);
    if (n < 0) {
        if (e == EPIPE || e == ECONNRESET || e == ENOTCONN) {
            pthread_mutex_lock(&s->lock);
            kr_mark_dead(s, fd, "has closed the connection");
            pthread_mutex_unlock(&s->lock);
            e = ECONNREFUSED;
        }
        errno = e;
        return -1;
    }
    /* An empty datagram (ignored by the kernel and the simulator) as a barrier, then wait
       until both are consumed: the answers to the request are queued when we return. */
    kr_put_le32(prefix, port == KR_CONTROL_PORT ? 0 : port);
    if (real_send_get()(fd, prefix, sizeof prefix, MSG_NOSIGNAL | MSG_DONTWAIT) == (ssize_t)sizeof prefix)
        kr_wait_consumed(fd);
    DEBUG("fd %d: sent a datagram of %zd bytes", fd, n - KR_PREFIX);
    errno = e;
    return n - KR_PREFIX;
}

KR_EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
    struct kr_sock *s = kr_get(fd);
    if (s == NULL)
        return real_sendmsg_get()(fd, msg, flags);
    if (msg == NULL)
        return kr_fail(s, EFAULT);
    ssize_t n = kr_sendmsg(s, fd, msg, flags);
    int e = errno;
    kr_put(s);
    errno = e;
    return n;
}

KR_EXPORT ssize_t sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *addr, socklen_t alen)
{
    struct kr_sock *s = kr_get(fd);
    if (s == NULL)
        return real_sendto_get()(fd, buf, len, flags, addr, alen);
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    struct msghdr m = {.msg_name = (void *)addr, .msg_namelen = addr ? alen : 0, .msg_iov = &iov, .msg_iovlen = 1};
    ssize_t n = kr_sendmsg(s, fd, &m, flags);
    int e = errno;
    kr_put(s);
    errno = e;
    return n;
}

KR_EXPORT ssize_t send(int fd, const void *buf, size_t len, int flags)
{
    return sendto(fd, buf, len, flags, NULL, 0);
}

KR_EXPORT ssize_t write(int fd, const void *buf, size_t len)
{
    struct kr_sock *s = kr_get(fd);
    if (s == NULL)
        return real_write_get()(fd, buf, len);
    kr_put(s);
    return sendto(fd, buf, len, 0, NULL, 0);
}

/* --- receiving ----------------------------------------------------------------------------- */

static size_t kr_iov_copy(const struct iovec *iov, size_t iovlen, const unsigned char *src, size_t n)
{
    size_t done = 0;
    for (size_t i = 0; i < iovlen && done < n; i++) {
        size_t take = iov[i].iov_len < n - done ? iov[i].iov_len : n - done;
        if (take) {
            memcpy(iov[i].iov_base, src + done, take);
            done += take;
        }
    }
    return done;
}

static size_t kr_iov_len(const struct iovec *iov, size_t iovlen)
{
    size_t total = 0;
    for (size_t i = 0; i < iovlen; i++)
        total += iov[i].iov_len;
    return total;
}

static ssize_t kr_deliver(struct kr_sock *s, struct msghdr *msg, int flags, const unsigned char *pkt,
                          size_t len)
{
    const unsigned char *body = pkt + KR_PREFIX;
    size_t blen = len - KR_PREFIX;
    size_t copied = kr_iov_copy(msg->msg_iov, msg->msg_iovlen, body, blen);
    msg->msg_flags = copied < blen ? MSG_TRUNC : 0;
    msg->msg_controllen = 0;
    if (msg->msg_name != NULL)
        kr_fill_addr(msg->msg_name, &msg->msg_namelen, kr_le32(pkt), kr_sender_groups(s->groups, body, blen, blen));
    return (flags & MSG_TRUNC) ? (ssize_t)blen : (ssize_t)copied;
}

static int kr_nonblocking(int fd, int flags)
{
    if (flags & MSG_DONTWAIT)
        return 1;
    int fl = real_fcntl_get()(fd, F_GETFL);
    return fl >= 0 && (fl & O_NONBLOCK);
}

static ssize_t kr_recvmsg(struct kr_sock *s, int fd, struct msghdr *msg, int flags)
{
    if (flags & MSG_OOB) {
        errno = EOPNOTSUPP;
        return -1;
    }
    int nonblock = kr_nonblocking(fd, flags);
    unsigned char head[KR_PEEK];
    for (;;) {
        pthread_mutex_lock(&s->lock);
        if (s->pending_err) {
            int e = s->pending_err;
            s->pending_err = 0; /* sock_error(): reported once, even to a peek */
            pthread_mutex_unlock(&s->lock);
            errno = e;
            return -1;
        }
        if (s->stash_head != NULL) {
            struct kr_pkt *p = s->stash_head;
            ssize_t r = kr_deliver(s, msg, flags, p->data, p->len);
            if (!(flags & MSG_PEEK)) {
                s->stash_head = p->next;
                if (s->stash_head == NULL)
                    s->stash_tail = NULL;
                free(p);
            }
            pthread_mutex_unlock(&s->lock);
            return r;
        }
        if (s->dead) {
            pthread_mutex_unlock(&s->lock);
            errno = ECONNREFUSED;
            return -1;
        }
        ssize_t n = real_recv_get()(fd, head, sizeof head, MSG_PEEK | MSG_DONTWAIT);
        if (n < 0) {
            int e = errno;
            pthread_mutex_unlock(&s->lock);
            if (e != EAGAIN && e != EWOULDBLOCK) {
                errno = e;
                return -1;
            }
            if (nonblock) {
                errno = EAGAIN;
                return -1;
            }
            /* Block natively (SO_RCVTIMEO and signals behave as on the real socket). */
            n = real_recv_get()(fd, head, 1, MSG_PEEK);
            if (n < 0)
                return -1;
            continue;
        }
        if (n == 0) {
            if (!kr_peer_closed(fd)) {
                (void)real_recv_get()(fd, head, sizeof head, MSG_DONTWAIT); /* an empty packet */
                pthread_mutex_unlock(&s->lock);
                continue;
            }
            kr_mark_dead(s, fd, "has closed the connection");
            pthread_mutex_unlock(&s->lock);
            errno = ECONNREFUSED;
            return -1;
        }
        if (n < KR_PREFIX || kr_le32(head) == KR_CONTROL_PORT) {
            unsigned char ctl[KR_PEEK];
            ssize_t m = real_recv_get()(fd, ctl, sizeof ctl, MSG_DONTWAIT);
            struct kr_ctl c;
            if (m >= KR_PREFIX && kr_le32(ctl) == KR_CONTROL_PORT && kr_ctl_decode(ctl, (size_t)m, &c) == 0) {
                if (c.op == KR_OP_SOCKERR)
                    kr_take_sockerr(s, &c);
                else if (c.op & KR_OP_RESULT) {
                    kr_take_result(s, &c);
                    if (s->pending_async > 0)
                        s->pending_async--;
                }
            }
            pthread_mutex_unlock(&s->lock);
            continue;
        }
        /* A datagram: read it into the caller's buffers behind our 4-byte prefix. */
        unsigned char prefix[KR_PREFIX];
        size_t niov = msg->msg_iovlen + 1;
        struct iovec small[9];
        struct iovec *iov = niov <= 9 ? small : malloc(niov * sizeof *iov);
        if (iov == NULL) {
            pthread_mutex_unlock(&s->lock);
            errno = ENOMEM;
            return -1;
        }
        iov[0].iov_base = prefix;
        iov[0].iov_len = sizeof prefix;
        if (msg->msg_iovlen)
            memcpy(iov + 1, msg->msg_iov, msg->msg_iovlen * sizeof *iov);
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = niov};
        ssize_t r = real_recvmsg_get()(fd, &m, MSG_DONTWAIT | MSG_TRUNC | (flags & MSG_PEEK));
        int e = errno;
        if (iov != small)
            free(iov);
        if (r < 0) {
            pthread_mutex_unlock(&s->lock);
            if (e == EAGAIN || e == EWOULDBLOCK || e == EINTR)
                continue;
            errno = e;
            return -1;
        }
        if (r < KR_PREFIX || kr_le32(prefix) == KR_CONTROL_PORT) {
            pthread_mutex_unlock(&s->lock); /* another process sharing the socket raced us */
            continue;
        }
        size_t blen = (size_t)r - KR_PREFIX;
        size_t room = kr_iov_len(msg->msg_iov, msg->msg_iovlen);
        uint32_t groups = kr_sender_groups(s->groups, head + KR_PREFIX, (size_t)n - KR_PREFIX, blen);
        pthread_mutex_unlock(&s->lock);
        msg->msg_flags = blen > room ? MSG_TRUNC : 0;
        msg->msg_controllen = 0;
        if (msg->msg_name != NULL)
            kr_fill_addr(msg->msg_name, &msg->msg_namelen, kr_le32(prefix), groups);
        return (flags & MSG_TRUNC) ? (ssize_t)blen : (ssize_t)(blen < room ? blen : room);
    }
}

KR_EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
    struct kr_sock *s = kr_get(fd);
    if (s == NULL)
        return real_recvmsg_get()(fd, msg, flags);
    if (msg == NULL)
        return kr_fail(s, EFAULT);
    ssize_t n = kr_recvmsg(s, fd, msg, flags);
    int e = errno;
    kr_put(s);
    errno = e;
    return n;
}

KR_EXPORT ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *addr, socklen_t *alen)
{
    struct kr_sock *s = kr_get(fd);
    if (s == NULL)
        return real_recvfrom_get()(fd, buf, len, flags, addr, alen);
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    if (addr != NULL && alen != NULL) {
        m.msg_name = addr;
        m.msg_namelen = *alen;
    }
    ssize_t n = kr_recvmsg(s, fd, &m, flags);
    int e = errno;
    if (n >= 0 && addr != NULL && alen != NULL)
        *alen = m.msg_namelen;
    kr_put(s);
    errno = e;
    return n;
}

KR_EXPORT ssize_t recv(int fd, void *buf, size_t len, int flags)
{
    return recvfrom(fd, buf, len, flags, NULL, NULL);
}

KR_EXPORT ssize_t read(int fd, void *buf, size_t len)
{
    struct kr_sock *s = kr_get(fd);
    if (s == NULL)
        return real_read_get()(fd, buf, len);
    kr_put(s);
    return recvfrom(fd, buf, len, 0, NULL, NULL);
}

/* _FORTIFY_SOURCE builds call these instead. */
extern void __chk_fail(void) __attribute__((noreturn));

KR_EXPORT ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags)
{
    if (len > buflen)
        __chk_fail();
    return recv(fd, buf, len, flags);
}

KR_EXPORT ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buflen, int flags, struct sockaddr *addr,
                                 socklen_t *alen)
{
    if (len > buflen)
        __chk_fail();
    return recvfrom(fd, buf, len, flags, addr, alen);
}

KR_EXPORT ssize_t __read_chk(int fd, void *buf, size_t len, size_t buflen)
{
    if (len > buflen)
        __chk_fail();
    return read(fd, buf, len);
}

/* --- options ------------------------------------------------------------------------------- */

KR_EXPORT int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
    struct kr_sock *s = kr_get(fd);
    if (s == NULL)
        return real_setsockopt_get()(fd, level, name, val, len);
    if (level == SOL_SOCKET) {
#ifndef SO_ATTACH_BPF
#define SO_ATTACH_BPF 50
#endif
        if (name == SO_ATTACH_FILTER || name == SO_ATTACH_BPF) {
            kr_note_once(2u, "socket filters on the NETLINK_AUDIT socket are accepted but not applied by the "
                             "simulator");
            kr_put(s);
            return 0;
        }
        kr_put(s);
        return real_setsockopt_get()(fd, level, name, val, len); /* SO_RCVBUF ...: the unix socket's own */
    }
    if (level != SOL_NETLINK)
        return kr_fail(s, ENOPROTOOPT);
    int v = 0;
    if (len >= (socklen_t)sizeof v) {
        if (val == NULL)
            return kr_fail(s, EFAULT);
        memcpy(&v, val, sizeof v);
    }
    int err = 0;
    pthread_mutex_lock(&s->lock);
    switch (name) {
    case NETLINK_ADD_MEMBERSHIP:
    case NETLINK_DROP_MEMBERSHIP:
        err = kr_control(s, fd, KR_OP_SETSOCKOPT, (uint32_t)name, (uint32_t)v);
        break;
    case NETLINK_CAP_ACK:
    case NETLINK_EXT_ACK:
        if (len < (socklen_t)sizeof v) {
            err = -EINVAL;
            break;
        }
        s->opts[name] = v != 0;
        /* the endpoint always accepts these: tell it without waiting for the answer */
        err = s->dead ? -ECONNREFUSED : kr_send_ctl(s, fd, KR_OP_SETSOCKOPT, (uint32_t)name, (uint32_t)(v != 0));
        if (!err)
            s->pending_async++;
        break;
    case NETLINK_PKTINFO:
    case NETLINK_BROADCAST_ERROR:
    case NETLINK_NO_ENOBUFS:
    case NETLINK_LISTEN_ALL_NSID:
    case NETLINK_GET_STRICT_CHK:
        if (len < (socklen_t)sizeof v) {
            err = -EINVAL;
            break;
        }
        s->opts[name] = v != 0;
        if (name == NETLINK_PKTINFO && v)
            kr_note_once(4u, "NETLINK_PKTINFO is accepted but the simulator attaches no NETLINK_PKTINFO "
                             "control message");
        break;
    default:
        err = -ENOPROTOOPT;
    }
    pthread_mutex_unlock(&s->lock);
    DEBUG("fd %d: setsockopt(SOL_NETLINK, %d, %d) -> %d", fd, name, v, err);
    if (err)
        return kr_fail(s, -err);
    kr_put(s);
    return 0;
}

static int kr_put_int(void *val, socklen_t *len, int v)
{
    if (val == NULL || len == NULL)
        return -EFAULT;
    if (*len < (socklen_t)sizeof v)
        return -EINVAL;
    memcpy(val, &v, sizeof v);
    *len = sizeof v;
    return 0;
}

KR_EXPORT int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
    struct kr_sock *s = kr_get(fd);
    if (s == NULL)
        return real_getsockopt_get()(fd, level, name, val, len);
    int err;
    if (level == SOL_SOCKET) {
        switch (name) {
        case SO_TYPE:
            err = kr_put_int(val, len, s->type);
            break;
        case SO_PROTOCOL:
            err = kr_put_int(val, len, NETLINK_AUDIT);
            break;
        case SO_DOMAIN:
            err = kr_put_int(val, len, AF_NETLINK);
            break;
        case SO_PEERCRED: {
            /* a netlink socket has no peer: pid 0, the overflow uid/gid */
            struct ucred cred = {.pid = 0, .uid = 65534, .gid = 65534};
            if (val == NULL || len == NULL) {
                err = -EFAULT;
                break;
            }
            size_t n = *len < (socklen_t)sizeof cred ? (size_t)*len : sizeof cred;
            memcpy(val, &cred, n);
            *len = (socklen_t)n;
            err = 0;
            break;
        }
        default:
            kr_put(s);
            return real_getsockopt_get()(fd, level, name, val, len);
        }
    } else if (level != SOL_NETLINK) {
        err = -ENOPROTOOPT;
    } else {
        pthread_mutex_lock(&s->lock);
        switch (name) {
        case NETLINK_LIST_MEMBERSHIPS:
            kr_sync_name(s, fd);
            if (val == NULL || len == NULL) {
                err = -EFAULT;
            } else {
                uint32_t g = s->groups;
                size_t n = *len < (socklen_t)sizeof g ? (size_t)*len : sizeof g;
                memcpy(val, &g, n);
                *len = sizeof g;
                err = 0;
            }
            break;
        case NETLINK_PKTINFO:
        case NETLINK_BROADCAST_ERROR:
        case NETLINK_NO_ENOBUFS:
        case NETLINK_LISTEN_ALL_NSID:
        case NETLINK_CAP_ACK:
        case NETLINK_EXT_ACK:
        case NETLINK_GET_STRICT_CHK:
            err = kr_put_int(val, len, s->opts[name]);
            break;
        default:
            err = -ENOPROTOOPT;
        }
        pthread_mutex_unlock(&s->lock);
    }
    if (err)
        return kr_fail(s, -err);
    kr_put(s);
    return 0;
}

/* --- descriptors --------------------------------------------------------------------------- */

KR_EXPORT int close(int fd)
{
    struct kr_sock *s = kr_take(fd);
    int r = real_close_get()(fd);
    if (s != NULL) {
        int e = errno;
        DEBUG("fd %d: closed", fd);
        kr_put(s);
        errno = e;
    }
    return r;
}

static int kr_after_dup(int oldfd, int newfd)
{
    if (newfd < 0)
        return newfd;
    int e = errno;
    struct kr_sock *s = kr_get(oldfd);
    if (s != NULL) {
        kr_install(newfd, s);
        kr_put(s);
    }
    errno = e;
    return newfd;
}

KR_EXPORT int dup(int oldfd) { return kr_after_dup(oldfd, real_dup_get()(oldfd)); }

KR_EXPORT int dup2(int oldfd, int newfd)
{
    if (oldfd == newfd)
        return real_dup2_get()(oldfd, newfd);
    int r = real_dup2_get()(oldfd, newfd);
    if (r >= 0) {
        int e = errno;
        kr_put(kr_take(newfd));
        errno = e;
    }
    return kr_after_dup(oldfd, r);
}

KR_EXPORT int dup3(int oldfd, int newfd, int flags)
{
    int r = real_dup3_get()(oldfd, newfd, flags);
    if (r >= 0) {
        int e = errno;
        kr_put(kr_take(newfd));
        errno = e;
    }
    return kr_after_dup(oldfd, r);
}

static int kr_fcntl(fcntl_fn real, int fd, int cmd, void *arg)
{
    int r = real(fd, cmd, arg);
    if ((cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) && r >= 0)
        return kr_after_dup(fd, r);
    return r;
}

KR_EXPORT int fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *); /* int and pointer arguments travel the same way */
    va_end(ap);
    return kr_fcntl(real_fcntl_get(), fd, cmd, arg);
}

KR_EXPORT int fcntl64(int fd, int cmd, ...)
{
    static fcntl_fn real64;
    fcntl_fn f = __atomic_load_n(&real64, __ATOMIC_ACQUIRE);
    if (f == NULL) {
        f = (fcntl_fn)kr_optional("fcntl64");
        if (f == NULL)
            f = real_fcntl_get();
        __atomic_store_n(&real64, f, __ATOMIC_RELEASE);
    }
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return kr_fcntl(f, fd, cmd, arg);
}

KR_EXPORT int close_range(unsigned int first, unsigned int last, int flags)
{
    close_range_fn f = (close_range_fn)kr_optional("close_range");
    if (f == NULL) {
        errno = ENOSYS;
        return -1;
    }
    int r = f(first, last, flags);
    if (r == 0 && !(flags & 4 /* CLOSE_RANGE_CLOEXEC */)) {
        int e = errno;
        kr_drop_range(first, last);
        errno = e;
    }
    return r;
}

KR_EXPORT void closefrom(int lowfd)
{
    closefrom_fn f = (closefrom_fn)kr_optional("closefrom");
    if (f != NULL)
        f(lowfd);
    kr_drop_range(lowfd < 0 ? 0 : (unsigned)lowfd, (unsigned)KR_MAX_FD - 1);
}
