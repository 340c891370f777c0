/*
 * kaudit's native drain: the kernel audit socket -> length-prefixed frames, in C.
 *
 * Why it exists: in a connect storm (~80,000 datagrams/s) the Python drain loop
 * (collector.receiver._Drainer.drain) cost several microseconds of CPU per datagram, most of
 * it interpreter overhead around one recvfrom; the drainer was half of kaudit's CPU per 1,000
 * records (issue 6). This is the same loop for the kernel socket case (no endpoint prefix)
 * and nothing else; the Python loop stays the reference and the fallback, and
 * tests/test_fastlane_drain.py checks that both leave the same buffer, control frames,
 * counters and return values, call after call.
 *
 * What a call does, exactly as the Python loop:
 *   - frame datagrams at buf[off:] until the socket is empty (EAGAIN) or off >= limit;
 *     MSG_DONTWAIT, so a blocking socket reads as empty instead of waiting (both receiver
 *     modes make the socket non-blocking anyway);
 *   - EINTR: run the signal handlers (an exception from one ends the call) and retry;
 *   - ENOBUFS: an 8-byte marker frame (length 0, kind 0xFFFFFFFE), and go on;
 *   - a datagram that fills the whole room (``room`` bytes) counts as truncated, dropped;
 *   - the sender as sender_of() says (the netlink port id); non-zero: dropped;
 *   - the frame header is <u32 length><u32 0>, little-endian (receiver._FRAME);
 *   - a control reply (nlmsg_type < 1024, not one of the low-numbered record types passed
 *     in) is appended to ``ctl`` as its own frame bytes and not left in the buffer;
 *   - any other error ends the call; it comes back as an exception object in the result
 *     (not raised), so that the caller first keeps what was received before it, as the
 *     Python loop's ``finally`` does.
 *
 * Receiving: recvmmsg, up to BATCH datagrams a system call (a third of the cost of a recv
 * on this kind of machine is entering and leaving the kernel). Each datagram gets a slot of
 * the full room in a scratch mapping (virtual memory: only the pages datagrams touch become
 * resident), so truncation is decided exactly as with one recvfrom into the room. Frames are
 * then copied into buf one by one while off < limit; datagrams of a batch that the limit
 * leaves over stay in the scratch ("carried") and are framed first by the next call, before
 * the socket is read again. The frames each call leaves, the control frames, the counters
 * (counted when a datagram is framed, not when received) and "empty" are therefore those of
 * the Python loop, which would have read the carried datagrams from the socket next time.
 * A batch shorter than asked is not taken as "empty": the call reads on until EAGAIN, as the
 * Python loop does (recvmmsg also ends a batch early on an error, ENOBUFS among them, and
 * reports the error on the next call).
 *
 * The receive loop runs without the GIL (the thread mode runs the drainer beside the
 * parser); the GIL is taken back only to append a control frame or to run signal handlers.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <linux/netlink.h>

#define KIND_ENOBUFS 0xFFFFFFFEu
#define FRAME 8
#define MAX_LOW 32
#define BATCH 64
/* slots a page and a cache line apart beyond the room: slot starts 256 KiB apart would all
   fall in the same cache set */
#define SLOT_PAD 4160

typedef struct {
    PyObject_HEAD
    unsigned char *scratch;
    size_t scratch_len;
    Py_ssize_t room, stride;
    int busy;
    /* the batch last received: datagram i is at scratch + i * stride */
    int count, next;
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    struct sockaddr_storage addr[BATCH];
} DrainObject;

/* One call's state. */
typedef struct {
    DrainObject *self;
    unsigned char *buf;
    Py_ssize_t off, limit;
    int fd;
    long long n_calls, n_dgrams, n_bytes, enobufs, truncated, dropped, control;
    int empty;
    int err; /* errno of the error that ended the call */
    Py_ssize_t ctl_len; /* frame length of the control reply at off (STOP_CONTROL) */
    int n_low;
    unsigned int low[MAX_LOW];
} drain_t;

enum { STOP_LIMIT, STOP_EMPTY, STOP_CONTROL, STOP_EINTR, STOP_ERROR };

static inline void put_u32le(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static inline int is_low_record(const drain_t *d, unsigned int type)
{
    for (int i = 0; i < d->n_low; i++)
        if (d->low[i] == type)
            return 1;
    return 0;
}

/*
 * The sender as the Python loop sees it (``addr[0] if addr else 0``, compared with 0): no
 * address -> 0; netlink -> nl_pid; a Unix socket -> 0 when unnamed or abstract (bytes starting
 * with NUL), else non-zero (a path string); any other family -> non-zero (a host or family).
 * Only the netlink case occurs on the kernel socket; the rest keeps the tests' socketpairs
 * (tests/test_fastlane_drain.py) comparable with the Python loop.
 */
static uint32_t sender_of(const struct sockaddr_storage *ss, socklen_t alen)
{
    if (alen == 0)
        return 0;
    if (ss->ss_family == AF_NETLINK)
        return alen >= (socklen_t)(offsetof(struct sockaddr_nl, nl_pid) + sizeof(uint32_t))
                   ? ((const struct sockaddr_nl *)ss)->nl_pid
                   : 0;
    if (ss->ss_family == AF_UNIX) {
        const struct sockaddr_un *un = (const struct sockaddr_un *)ss;
        size_t path = alen > (socklen_t)offsetof(struct sockaddr_un, sun_path)
                          ? (size_t)alen - offsetof(struct sockaddr_un, sun_path)
                          : 0;
        return path > 0 && un->sun_path[0] != 0;
    }
    return 1;
}

/* Receive the next batch into the scratch: > 0 datagrams, 0 none (empty), -1 errno. */
static int receive(DrainObject *o, int fd)
{
    for (int i = 0; i < BATCH; i++) {
        struct msghdr *h = &o->msgs[i].msg_hdr;
        h->msg_name = &o->addr[i];
        h->msg_namelen = sizeof o->addr[i];
        h->msg_iov = &o->iov[i];
        h->msg_iovlen = 1;
        h->msg_control = NULL;
        h->msg_controllen = 0;
        h->msg_flags = 0;
        o->msgs[i].msg_len = 0;
    }
    int n = recvmmsg(fd, o->msgs, BATCH, MSG_DONTWAIT, NULL);
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
    o->count = n;
    o->next = 0;
    return n;
}

/* The receive loop; called without the GIL. Returns why it stopped. */
static int run(drain_t *d)
{
    DrainObject *o = d->self;
    while (d->off < d->limit) {
        if (o->next >= o->count) {
            o->count = o->next = 0;
            int n = receive(o, d->fd);
            if (n == 0) {
                d->empty = 1;
                return STOP_EMPTY;
            }
            if (n < 0) {
                int e = errno;
                if (e == EINTR)
                    return STOP_EINTR;
                if (e == ENOBUFS) {
                    unsigned char *frame = d->buf + d->off;
                    d->enobufs++;
                    put_u32le(frame, 0);
                    put_u32le(frame + 4, KIND_ENOBUFS);
                    d->off += FRAME;
                    continue;
                }
                d->err = e;
                return STOP_ERROR;
            }
        }
        int i = o->next++;
        Py_ssize_t n = (Py_ssize_t)o->msgs[i].msg_len;
        d->n_calls++;
        if (n >= o->room) {
            d->truncated++;
            continue;
        }
        if (sender_of(&o->addr[i], o->msgs[i].msg_hdr.msg_namelen) != 0) {
            d->dropped++;
            continue;
        }
        unsigned char *frame = d->buf + d->off;
        put_u32le(frame, (uint32_t)n);
        put_u32le(frame + 4, 0);
        memcpy(frame + FRAME, o->scratch + (size_t)i * (size_t)o->stride, (size_t)n);
        if (n >= 16) {
            uint16_t type; /* nlmsg_type, host order, after the 4-byte nlmsg_len */
            memcpy(&type, frame + FRAME + 4, sizeof type);
            if (type < 1024 && !is_low_record(d, type)) {
                d->ctl_len = FRAME + n;
                return STOP_CONTROL;
            }
        }
        d->off += FRAME + n;
        d->n_dgrams++;
        d->n_bytes += n;
    }
    return STOP_LIMIT;
}

/* The pending exception, normalized, as an object (the error indicator cleared). */
static PyObject *take_exception(void)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL)
        PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    if (value == NULL)
        Py_RETURN_NONE;
    return value;
}

PyDoc_STRVAR(drain_doc,
"drain(fd, buf, off, limit, low_records, ctl)\n"
"    -> (off, empty, n_calls, n_dgrams, n_bytes, enobufs, truncated, dropped_sender, control, error)\n\n"
"Frame datagrams from the netlink socket fd into the bytearray buf from off until the socket\n"
"is empty or off >= limit (collector.receiver._Drainer.drain for the kernel socket). Control\n"
"replies are appended to the list ctl. error is None or the exception that ended the call\n"
"(returned, not raised, so the caller keeps what came before it).");

static PyObject *Drain_drain(DrainObject *self, PyObject *args)
{
    int fd;
    Py_buffer view;
    Py_ssize_t off, limit;
    PyObject *low, *ctl;
    if (!PyArg_ParseTuple(args, "iw*nnO!O!:drain", &fd, &view, &off, &limit, &PyTuple_Type, &low, &PyList_Type, &ctl))
        return NULL;
    drain_t d;
    memset(&d, 0, sizeof d);
    PyObject *error = NULL;
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "Drain.drain: already running in another thread");
        goto fail;
    }
    if (off < 0 || off > view.len || limit > view.len - self->room - FRAME) {
        PyErr_Format(PyExc_ValueError, "Drain.drain: off %zd, limit %zd and room %zd do not fit a buffer of %zd bytes",
                     off, limit, self->room, view.len);
        goto fail;
    }
    Py_ssize_t n_low = PyTuple_GET_SIZE(low);
    if (n_low > MAX_LOW) {
        PyErr_SetString(PyExc_ValueError, "Drain.drain: too many low record types");
        goto fail;
    }
    for (Py_ssize_t i = 0; i < n_low; i++) {
        unsigned long v = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(low, i));
        if (v == (unsigned long)-1 && PyErr_Occurred())
            goto fail;
        d.low[i] = (unsigned int)v;
    }
    d.n_low = (int)n_low;
    d.self = self;
    d.buf = (unsigned char *)view.buf;
    d.off = off;
    d.limit = limit;
    d.fd = fd;

    self->busy = 1;
    for (;;) {
        int why;
        Py_BEGIN_ALLOW_THREADS
        why = run(&d);
        Py_END_ALLOW_THREADS
        if (why == STOP_CONTROL) {
            PyObject *frame = PyBytes_FromStringAndSize((const char *)d.buf + d.off, d.ctl_len);
            if (frame == NULL || PyList_Append(ctl, frame) < 0) {
                Py_XDECREF(frame);
                error = take_exception();
                break;
            }
            Py_DECREF(frame);
            d.control++;
            continue;
        }
        if (why == STOP_EINTR) {
            if (PyErr_CheckSignals() < 0) {
                error = take_exception();
                break;
            }
            continue;
        }
        if (why == STOP_ERROR) {
            errno = d.err;
            PyErr_SetFromErrno(PyExc_OSError);
            error = take_exception();
        }
        break;
    }
    self->busy = 0;
    PyBuffer_Release(&view);
    if (error == NULL) {
        error = Py_None;
        Py_INCREF(error);
    }
    return Py_BuildValue("(nNLLLLLLLN)", d.off, PyBool_FromLong(d.empty), d.n_calls, d.n_dgrams, d.n_bytes,
                         d.enobufs, d.truncated, d.dropped, d.control, error);

fail:
    PyBuffer_Release(&view);
    return NULL;
}

static PyObject *Drain_carried(DrainObject *self, void *closure)
{
    return PyLong_FromLong(self->count - self->next);
}

static int Drain_init(DrainObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"room", NULL};
    Py_ssize_t room;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "n:Drain", kwlist, &room))
        return -1;
    if (self->scratch != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Drain: already initialized");
        return -1;
    }
    if (room < 16 || room > (1 << 26)) {
        PyErr_Format(PyExc_ValueError, "Drain: room %zd out of range", room);
        return -1;
    }
    self->room = room;
    self->stride = room + SLOT_PAD;
    self->scratch_len = (size_t)self->stride * BATCH;
    void *p = mmap(NULL, self->scratch_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    self->scratch = p;
    for (int i = 0; i < BATCH; i++) {
        self->iov[i].iov_base = self->scratch + (size_t)i * (size_t)self->stride;
        self->iov[i].iov_len = (size_t)room;
    }
    self->count = self->next = 0;
    return 0;
}

static void Drain_dealloc(DrainObject *self)
{
    if (self->scratch != NULL)
        munmap(self->scratch, self->scratch_len);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Drain_methods[] = {
    {"drain", (PyCFunction)Drain_drain, METH_VARARGS, drain_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Drain_getset[] = {
    {"carried", (getter)Drain_carried, NULL, "datagrams received but not yet framed (the next call frames them first)",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject DrainType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "_drain.Drain",
    .tp_basicsize = sizeof(DrainObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Drain(room): one drainer's receive state (a scratch of BATCH slots of room bytes).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Drain_init,
    .tp_dealloc = (destructor)Drain_dealloc,
    .tp_methods = Drain_methods,
    .tp_getset = Drain_getset,
};

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "_drain", "kaudit's native socket drain", -1, NULL};

PyMODINIT_FUNC PyInit__drain(void)
{
    if (PyType_Ready(&DrainType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&moddef);
    if (m == NULL)
        return NULL;
    Py_INCREF(&DrainType);
    if (PyModule_AddObject(m, "Drain", (PyObject *)&DrainType) < 0 || PyModule_AddIntConstant(m, "BATCH", BATCH) < 0) {
        Py_DECREF(&DrainType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
