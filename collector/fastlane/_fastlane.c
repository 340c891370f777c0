/*
 * kaudit's fast lane: whole audit events, text or netlink, to socket_events/process_events rows.
 *
 * Why it exists: the pure-Python pipeline (collector.parser -> publisher -> tables) spends
 * about 45 us per event; a replay then runs at a fifth of auparse's speed and a live storm
 * costs three times auditd's CPU. This file does the same work for the events that make up
 * nearly all real traffic, and nothing else:
 *
 *   an event whose records arrive one after the other, each a plain printable-ASCII record of
 *   a type the tables read (SYSCALL, SOCKADDR, EXECVE, CWD, PATH, PROCTITLE), with exactly one
 *   SYSCALL, ended by its EOE, from a local kernel (no node=), while the publisher holds no
 *   other open event.
 *
 * Anything else - another record type, interleaved events, a missing EOE, a quoted value with
 * a space, a split argument, a record the Python code would count as a drop - makes the lane
 * stop *before* the event ("bail") and hand the rest of the input back to the Python code
 * (collector.fastlane), which owns every rule. A bail never changes any state: an event is
 * read and checked completely before anything is counted, published or emitted. So the rows
 * and every counter are the Python pipeline's by construction of the bail rule, and the
 * differential tests (tests/test_fastlane.py) check that on the corpora.
 *
 * The publisher bookkeeping the lane does for a completed event is exactly what
 * collector.publisher.Publisher.feed/_complete do when no other event is open: the audit
 * clock, the expiry deadline, the completed-id window (_recent and _recent_order, pruned by
 * count and by audit time), and the serial tracker (lost serials). The Python side copies the
 * scalar state in before a call and back out after it (collector/fastlane/__init__.py).
 *
 * No I/O here: the caller reads the file or the socket.
 */
#include "_fastlane_types.h"
#include "_fastlane_text.h"
#include "_fastlane_rows.h"
#include "_fastlane_groups.h"

/* ---- the type: configuration and binding ------------------------------------------------ */

/*
 * Lane(typenums, names, syscalls, arches, options, sock_cls, proc_cls)
 *   typenums: {"SYSCALL": 1300, ...} for the seven types above
 *   names: every record type name auditd writes -> its number
 *   syscalls: {(arch, number): (name, kind)} for every syscall an enabled table wants
 *   arches: the arch values kaudit has syscall tables for
 *   options: (allow_failed, allow_null_accept, allow_unix, einprogress, eagain)
 */
static int Lane_init(Lane *self, PyObject *args, PyObject *kwds)
{
    PyObject *typenums, *names, *syscalls, *arches, *options, *sock_cls, *proc_cls;
    if (!PyArg_ParseTuple(args, "O!O!O!OO!OO", &PyDict_Type, &typenums, &PyDict_Type, &names, &PyDict_Type, &syscalls,
                          &arches, &PyTuple_Type, &options, &sock_cls, &proc_cls))
        return -1;
    Py_XSETREF(self->names, Py_NewRef(names));
    Py_XSETREF(self->others, PyDict_New());
    if (self->others == NULL)
        return -1;
    for (int i = 0; i < NTYPES; i++) {
        PyObject *v = PyDict_GetItemString(typenums, TYPE_NAMES[i]);
        if (v == NULL) {
            PyErr_Format(PyExc_ValueError, "typenums lacks %s", TYPE_NAMES[i]);
            return -1;
        }
        self->typenum[i] = PyLong_AsLong(v);
        if (self->typenum[i] == -1 && PyErr_Occurred())
            return -1;
    }
    Py_ssize_t n = PyDict_GET_SIZE(syscalls);
    PyMem_Free(self->sys);
    self->sys = PyMem_Calloc((size_t)n + 1, sizeof(SysEntry));
    if (self->sys == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t it = 0;
    PyObject *k, *v;
    int ns = 0;
    while (PyDict_Next(syscalls, &it, &k, &v)) {
        unsigned long arch;
        long long nr;
        PyObject *name;
        int kind;
        if (!PyArg_ParseTuple(k, "kL", &arch, &nr) || !PyArg_ParseTuple(v, "Ui", &name, &kind))
            return -1;
        self->sys[ns].arch = (uint32_t)arch;
        self->sys[ns].nr = nr;
        self->sys[ns].kind = kind;
        self->sys[ns].name = name;
        ns++;
    }
    self->nsys = ns;
    Py_XSETREF(self->syscalls, Py_NewRef(syscalls));
    PyObject *af = PySequence_Fast(arches, "arches must be a sequence");
    if (af == NULL)
        return -1;
    Py_ssize_t na = PySequence_Fast_GET_SIZE(af);
    PyMem_Free(self->arches);
    self->arches = PyMem_Calloc((size_t)na + 1, sizeof(uint32_t));
    if (self->arches == NULL) {
        Py_DECREF(af);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < na; i++) {
        unsigned long a = PyLong_AsUnsignedLong(PySequence_Fast_GET_ITEM(af, i));
        if (a == (unsigned long)-1 && PyErr_Occurred()) {
            Py_DECREF(af);
            return -1;
        }
        self->arches[i] = (uint32_t)a;
    }
    self->narch = (int)na;
    Py_DECREF(af);
    if (!PyArg_ParseTuple(options, "pppLL", &self->allow_failed, &self->allow_null_accept, &self->allow_unix,
                          &self->einprogress, &self->eagain))
        return -1;
    Py_XSETREF(self->sock_cls, Py_NewRef(sock_cls));
    Py_XSETREF(self->proc_cls, Py_NewRef(proc_cls));
    return 0;
}

/* bind(recent, order, open, emit, uptime, skip, exclude, recent_limit, recent_window, timeout) */
static PyObject *Lane_bind(Lane *self, PyObject *args)
{
    PyObject *recent, *order, *open, *emit, *uptime, *skip, *exclude;
    long long limit, window, timeout;
    if (!PyArg_ParseTuple(args, "O!OO!OOOOLLL", &PyDict_Type, &recent, &order, &PyDict_Type, &open, &emit, &uptime,
                          &skip, &exclude, &limit, &window, &timeout))
        return NULL;
    if (exclude != Py_None && !PyAnySet_Check(exclude)) {
        PyErr_SetString(PyExc_TypeError, "exclude must be a set of pid strings or None");
        return NULL;
    }
    PyObject *append = PyObject_GetAttrString(order, "append");
    PyObject *popleft = append ? PyObject_GetAttrString(order, "popleft") : NULL;
    if (popleft == NULL) {
        Py_XDECREF(append);
        return NULL;
    }
    Py_XSETREF(self->recent, Py_NewRef(recent));
    Py_XSETREF(self->open, Py_NewRef(open));
    Py_XSETREF(self->order, Py_NewRef(order));
    Py_XSETREF(self->order_append, append);
    Py_XSETREF(self->order_popleft, popleft);
    Py_XSETREF(self->emit, Py_NewRef(emit));
    Py_XSETREF(self->uptime, Py_NewRef(uptime));
    Py_XSETREF(self->skip, Py_NewRef(skip));
    Py_XSETREF(self->exclude, Py_NewRef(exclude));
    self->recent_limit = limit;
    self->recent_window = window;
    self->timeout = timeout;
    Py_RETURN_NONE;
}

/* take_counters() -> (records by type tuple, other types dict, events, lost, late, rows socket, rows process, self, bails), zeroed */
static PyObject *Lane_take_counters(Lane *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *types = PyTuple_New(NTYPES);
    if (types == NULL)
        return NULL;
    for (int i = 0; i < NTYPES; i++) {
        PyObject *pair = Py_BuildValue("(lL)", self->typenum[i], self->n_types[i]);
        if (pair == NULL) {
            Py_DECREF(types);
            return NULL;
        }
        PyTuple_SET_ITEM(types, i, pair);
        self->n_types[i] = 0;
    }
    PyObject *others = self->others;
    self->others = PyDict_New();
    if (self->others == NULL) {
        self->others = others;
        Py_DECREF(types);
        return NULL;
    }
    PyObject *res = Py_BuildValue("(NNLLLLLLL)", types, others, self->n_events, self->n_lost, self->n_late,
                                  self->n_rows_sock, self->n_rows_proc, self->n_self, self->n_bail);
    self->n_events = self->n_lost = self->n_late = self->n_rows_sock = self->n_rows_proc = self->n_self = self->n_bail = 0;
    return res;
}

static int Lane_traverse(Lane *self, visitproc visit, void *arg)
{
    Py_VISIT(self->syscalls);
    Py_VISIT(self->names);
    Py_VISIT(self->others);
    Py_VISIT(self->sock_cls);
    Py_VISIT(self->proc_cls);
    Py_VISIT(self->recent);
    Py_VISIT(self->order);
    Py_VISIT(self->order_append);
    Py_VISIT(self->order_popleft);
    Py_VISIT(self->emit);
    Py_VISIT(self->uptime);
    Py_VISIT(self->skip);
    Py_VISIT(self->exclude);
    Py_VISIT(self->open);
    Py_VISIT(self->seen);
    return 0;
}

static int Lane_clear(Lane *self)
{
    Py_CLEAR(self->syscalls);
    Py_CLEAR(self->names);
    Py_CLEAR(self->others);
    Py_CLEAR(self->sock_cls);
    Py_CLEAR(self->proc_cls);
    Py_CLEAR(self->recent);
    Py_CLEAR(self->order);
    Py_CLEAR(self->order_append);
    Py_CLEAR(self->order_popleft);
    Py_CLEAR(self->emit);
    Py_CLEAR(self->uptime);
    Py_CLEAR(self->skip);
    Py_CLEAR(self->exclude);
    Py_CLEAR(self->open);
    Py_CLEAR(self->seen);
    return 0;
}

static void Lane_dealloc(Lane *self)
{
    PyObject_GC_UnTrack(self);
    Lane_clear(self);
    PyMem_Free(self->sys);
    PyMem_Free(self->arches);
    Py_XDECREF(self->s_eoe);
    Py_XDECREF(self->s_empty);
    Py_XDECREF(self->s_zero);
    Py_XDECREF(self->s_accept);
    Py_XDECREF(self->s_succeeded);
    Py_XDECREF(self->s_in_progress);
    Py_XDECREF(self->s_no_client);
    Py_XDECREF(self->s_failed);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Lane_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    Lane *self = (Lane *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->s_eoe = PyUnicode_InternFromString("eoe");
    self->s_empty = PyUnicode_InternFromString("");
    self->s_zero = PyUnicode_InternFromString("0");
    self->s_accept = PyUnicode_InternFromString("accept");
    self->s_succeeded = PyUnicode_InternFromString("succeeded");
    self->s_in_progress = PyUnicode_InternFromString("in_progress");
    self->s_no_client = PyUnicode_InternFromString("no_client");
    self->s_failed = PyUnicode_InternFromString("failed");
    if (!self->s_eoe || !self->s_empty || !self->s_zero || !self->s_accept || !self->s_succeeded ||
        !self->s_in_progress || !self->s_no_client || !self->s_failed) {
        Py_DECREF(self);
        return NULL;
    }
    self->emit = Py_NewRef(Py_None);
    self->uptime = Py_NewRef(Py_None);
    self->exclude = Py_NewRef(Py_None);
    self->next_expiry = 1LL << 62;
    self->clock = -1;
    self->next_eid = 1;
    return (PyObject *)self;
}

static PyMemberDef Lane_members[] = {
    {"clock", T_LONGLONG, offsetof(Lane, clock), 0, "the publisher's audit clock (ms)"},
    {"next_expiry", T_LONGLONG, offsetof(Lane, next_expiry), 0, "the publisher's next expiry check (ms)"},
    {"boundary", T_LONGLONG, offsetof(Lane, boundary), 0, "the serial tracker's boundary (== max_seen)"},
    {"next_eid", T_LONGLONG, offsetof(Lane, next_eid), 0, "the next row's eid"},
    {"origin", T_LONGLONG, offsetof(Lane, origin), 0, "the serial tracker's origin"},
    {"max_seen", T_LONGLONG, offsetof(Lane, max_seen), 0, "the serial tracker's max_seen"},
    {"low", T_LONGLONG, offsetof(Lane, low), 0, "held: the lowest serial held open"},
    {"held", T_INT, offsetof(Lane, held), 0, "the publisher holds events of this node open"},
    {"any_open", T_INT, offsetof(Lane, any_open), 0, "the publisher holds events open"},
    {"seen", T_OBJECT, offsetof(Lane, seen), 0, "held: the tracker's seen set"},
    {NULL},
};

static PyMethodDef Lane_methods[] = {
    {"scan_text", (PyCFunction)Lane_scan_text, METH_VARARGS, "scan_text(buf, pos) -> (pos, bailed)"},
    {"scan_messages", (PyCFunction)Lane_scan_messages, METH_VARARGS, "scan_messages(msgs, i) -> (i, bailed)"},
    {"bind", (PyCFunction)Lane_bind, METH_VARARGS, "bind the publisher's and pipeline's objects"},
    {"take_counters", (PyCFunction)Lane_take_counters, METH_NOARGS, "this call's counters, zeroed"},
    {NULL},
};

static PyTypeObject LaneType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "_fastlane.Lane",
    .tp_basicsize = sizeof(Lane),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "whole audit events to rows, for the common case (see the file's comment)",
    .tp_new = Lane_new,
    .tp_init = (initproc)Lane_init,
    .tp_dealloc = (destructor)Lane_dealloc,
    .tp_traverse = (traverseproc)Lane_traverse,
    .tp_clear = (inquiry)Lane_clear,
    .tp_methods = Lane_methods,
    .tp_members = Lane_members,
};

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "_fastlane", "kaudit's native fast lane", -1, NULL};

PyMODINIT_FUNC PyInit__fastlane(void)
{
    if (PyType_Ready(&LaneType) < 0)
        return NULL;
    s_type_attr = PyUnicode_InternFromString("type");
    s_payload_attr = PyUnicode_InternFromString("payload");
    s_uptime_attr = PyUnicode_InternFromString("uptime");
    if (s_type_attr == NULL || s_payload_attr == NULL || s_uptime_attr == NULL)
        return NULL;
    PyObject *m = PyModule_Create(&moddef);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Lane", (PyObject *)&LaneType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    PyModule_AddIntConstant(m, "K_CONNECT", K_CONNECT);
    PyModule_AddIntConstant(m, "K_BIND", K_BIND);
    PyModule_AddIntConstant(m, "K_ACCEPT", K_ACCEPT);
    PyModule_AddIntConstant(m, "K_EXEC", K_EXEC);
    PyModule_AddIntConstant(m, "K_FORK", K_FORK);
    PyModule_AddIntConstant(m, "K_CLONE", K_CLONE);
    PyModule_AddIntConstant(m, "K_KILL", K_KILL);
    return m;
}

