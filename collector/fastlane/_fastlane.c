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
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

enum { R_SYSCALL, R_SOCKADDR, R_EXECVE, R_CWD, R_PATH, R_PROCTITLE, R_EOE, NTYPES };
/* any other record of a syscall event (BPRM_FCAPS, MMAP, AVC, LOGIN, ...): no table reads it,
   the publisher only counts and keeps it (not a single-record type, not EOE) */
#define R_OTHER NTYPES
static const char *const TYPE_NAMES[NTYPES] = {"SYSCALL", "SOCKADDR", "EXECVE", "CWD", "PATH", "PROCTITLE", "EOE"};

/* what a wanted syscall makes (collector.fastlane.KINDS) */
enum { K_CONNECT = 1, K_BIND, K_ACCEPT, K_EXEC, K_FORK, K_CLONE, K_KILL };

#define MAXREC 48       /* records in one event */
#define MAXTOK 128      /* fields in one record */
#define MAXLINE 8000    /* longer lines go to Python (its limit is 8970 from "audit(") */
#define MAXARGV 256     /* execve arguments */

#define KA_CLONE_PARENT 0x00008000ULL
#define KA_CLONE_THREAD 0x00010000ULL
#define AUDIT_ARCH_LE 0x40000000U

typedef struct {
    uint32_t arch;
    long long nr;
    int kind;
    PyObject *name; /* str, borrowed from the syscalls dict kept alive in Lane */
} SysEntry;

typedef struct {
    const char *k;
    Py_ssize_t kl;
    const char *v;
    Py_ssize_t vl;
} Tok;

typedef struct {
    int t;    /* R_SYSCALL ... R_EOE, or R_OTHER */
    long num; /* the record type number (for R_OTHER: which one) */
    const char *body;
    Py_ssize_t blen;
} Rec;

typedef struct {
    PyObject_HEAD
    /* configuration (set once, by __init__) */
    long typenum[NTYPES];
    SysEntry *sys;
    int nsys;
    uint32_t *arches;
    int narch;
    int allow_failed, allow_null_accept, allow_unix;
    long long einprogress, eagain;
    PyObject *syscalls; /* the dict the SysEntry names come from */
    PyObject *names;    /* every record type name -> number (audit.log text) */
    PyObject *others;   /* this call's counts of R_OTHER records, by type number */
    PyObject *sock_cls, *proc_cls;
    /* the publisher's and pipeline's objects (set by bind()) */
    PyObject *recent, *order_append, *order_popleft, *order;
    PyObject *emit, *uptime, *skip, *exclude;
    long long recent_limit, recent_window, timeout;
    /* scalar state, copied in and out by the Python side around every call */
    long long clock, next_expiry, boundary, next_eid;
    long long eid_cursor; /* the eid of the next row made while a group is decided */
    long long origin;     /* the serial tracker's origin: nothing at or below it was expected */
    long long max_seen;   /* the tracker's max_seen (== boundary unless held) */
    long long low;        /* held: the lowest serial of the events the publisher holds open */
    int held;             /* events of this node are open in the publisher (see scan_group) */
    int any_open;         /* the publisher has open events (of any node) */
    PyObject *seen;       /* held: the tracker's set of serials seen above the boundary */
    PyObject *open;       /* the publisher's open events, by key */
    /* counters of one call (the Python side adds them to its own and zeroes them) */
    long long n_types[NTYPES];
    long long n_events, n_lost, n_late, n_rows_sock, n_rows_proc, n_self, n_bail;
    /* interned strings */
    PyObject *s_eoe, *s_empty, *s_zero, *s_accept, *s_succeeded, *s_in_progress, *s_no_client, *s_failed;
} Lane;

/* ---- small parsers ------------------------------------------------------------------- */

/* plain decimal digits (what int() gives the same value for); -1 when not */
static int parse_udec(const char *p, Py_ssize_t n, long long *out)
{
    if (n < 1 || n > 18)
        return -1;
    long long v = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned c = (unsigned char)p[i] - '0';
        if (c > 9)
            return -1;
        v = v * 10 + c;
    }
    *out = v;
    return 0;
}

/* an optional '-' then decimal digits (a syscall's exit) */
static int parse_sdec(const char *p, Py_ssize_t n, long long *out)
{
    if (n > 0 && p[0] == '-') {
        if (parse_udec(p + 1, n - 1, out) < 0)
            return -1;
        *out = -*out;
        return 0;
    }
    return parse_udec(p, n, out);
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* plain hex digits, at most 16 (int(raw, 16) for what the kernel writes) */
static int parse_uhex(const char *p, Py_ssize_t n, unsigned long long *out)
{
    if (n < 1 || n > 16)
        return -1;
    unsigned long long v = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int h = hexval((unsigned char)p[i]);
        if (h < 0)
            return -1;
        v = (v << 4) | (unsigned)h;
    }
    *out = v;
    return 0;
}

/* hex text -> bytes into out (capacity cap); the length, or -1 (odd, not hex, too long) */
static Py_ssize_t unhex(const char *p, Py_ssize_t n, unsigned char *out, Py_ssize_t cap)
{
    if (n % 2 || n / 2 > cap)
        return -1;
    for (Py_ssize_t i = 0; i < n; i += 2) {
        int a = hexval((unsigned char)p[i]), b = hexval((unsigned char)p[i + 1]);
        if (a < 0 || b < 0)
            return -1;
        out[i / 2] = (unsigned char)(a << 4 | b);
    }
    return n / 2;
}

/*
 * Split a record body into key=value fields, as collector.parser's fast path does for a
 * kernel record; -1 (bail) for anything that path would not take as it is: a word without
 * '=', an empty value, a quote anywhere but around a whole value, a single quote.
 */
static int tokenize(const char *b, Py_ssize_t n, Tok *toks)
{
    int nt = 0;
    const char *p = b, *e = b + n;
    while (p < e) {
        if (*p == ' ') {
            p++;
            continue;
        }
        const char *w = p, *eq = NULL;
        int dq = 0, sq = 0;
        for (; p < e && *p != ' '; p++) {
            char c = *p;
            if (c == '=') {
                if (eq == NULL)
                    eq = p;
            } else if (c == '"') {
                dq++;
            } else if (c == '\'') {
                sq = 1;
            }
        }
        if (eq == NULL || eq == w || sq || nt == MAXTOK)
            return -1;
        const char *v = eq + 1;
        Py_ssize_t vl = p - v;
        if (vl < 1)
            return -1;
        /* quotes only around a whole value: "..." with none inside, and none in the key */
        if (dq && (dq != 2 || vl < 2 || v[0] != '"' || p[-1] != '"'))
            return -1;
        toks[nt].k = w;
        toks[nt].kl = eq - w;
        toks[nt].v = v;
        toks[nt].vl = vl;
        nt++;
    }
    return nt;
}

/* the first field named key (Record.fields(): the first occurrence wins), or NULL */
static const Tok *field(const Tok *toks, int nt, const char *key)
{
    size_t kl = strlen(key);
    char k0 = key[0];
    for (int i = 0; i < nt; i++)
        if ((size_t)toks[i].kl == kl && toks[i].k[0] == k0 && memcmp(toks[i].k, key, kl) == 0)
            return &toks[i];
    return NULL;
}

/*
 * decode_str(raw) for an untrusted string: "quoted" -> the text inside, hex -> UTF-8 with
 * U+FFFD for bad sequences, (null) -> "". New reference, or NULL with *bail set (not hex) or
 * with a Python error (*bail unset).
 */
static PyObject *decode_str(const char *v, Py_ssize_t vl, int *bail)
{
    if (v[0] == '"')
        return PyUnicode_DecodeASCII(v + 1, vl - 2, "strict");
    if (vl == 6 && memcmp(v, "(null)", 6) == 0)
        return PyUnicode_FromStringAndSize("", 0);
    unsigned char tmp[4096];
    Py_ssize_t n = unhex(v, vl, tmp, sizeof tmp);
    if (n < 0) {
        *bail = 1;
        return NULL;
    }
    return PyUnicode_DecodeUTF8((const char *)tmp, n, "replace");
}


/* decimal text of v into buf (no NUL); its length */
static int fmt_ull(char *buf, unsigned long long v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (int i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    return n;
}

/*
 * The row's eid (osquery's zero-padded counter, Tables.rows_for) and a placeholder uptime:
 * a live run's uptime is read when the row is emitted, after its group is known to be ours.
 */
static int row_clock(Lane *self, PyObject **eid, PyObject **uptime)
{
    char buf[32];
    int n;
    long long id = self->eid_cursor;
    if (id >= 0 && id < 10000000000LL) {
        char d[24];
        int k = fmt_ull(d, (unsigned long long)id);
        n = 10;
        memset(buf, '0', 10);
        memcpy(buf + 10 - k, d, (size_t)k);
    } else {
        n = snprintf(buf, sizeof buf, "%010lld", id);
    }
    *eid = PyUnicode_DecodeASCII(buf, n, "strict");
    if (*eid == NULL)
        return -1;
    *uptime = PyLong_FromLong(0);
    if (*uptime == NULL) {
        Py_CLEAR(*eid);
        return -1;
    }
    self->eid_cursor++;
    return 0;
}

/* cls(*args); args[i] is a new reference where own[i] (released here either way) */
static PyObject *make_row(PyObject *cls, PyObject **args, const char *own, int n)
{
    PyObject *row = NULL;
    for (int i = 0; i < n; i++)
        if (args[i] == NULL)
            goto done;
    row = PyObject_Vectorcall(cls, args, (size_t)n, NULL);
done:
    for (int i = 0; i < n; i++)
        if (own[i])
            Py_XDECREF(args[i]);
    return row;
}

/* the publisher's key of a local event, (None, serial, sec, msec); untracked by the GC (it
   holds no container), so that a storm of them does not drive collections */
static PyObject *make_key(long long serial, long long sec, long long msec)
{
    PyObject *key = PyTuple_New(4);
    if (key == NULL)
        return NULL;
    PyObject *a = PyLong_FromLongLong(serial), *b = PyLong_FromLongLong(sec), *c = PyLong_FromLongLong(msec);
    if (a == NULL || b == NULL || c == NULL) {
        Py_XDECREF(a);
        Py_XDECREF(b);
        Py_XDECREF(c);
        Py_DECREF(key);
        return NULL;
    }
    PyTuple_SET_ITEM(key, 0, Py_NewRef(Py_None));
    PyTuple_SET_ITEM(key, 1, a);
    PyTuple_SET_ITEM(key, 2, b);
    PyTuple_SET_ITEM(key, 3, c);
    PyObject_GC_UnTrack(key);
    return key;
}

/* ---- the lane ------------------------------------------------------------------------ */

static const SysEntry *lookup_syscall(Lane *self, uint32_t arch, long long nr)
{
    for (int i = 0; i < self->nsys; i++)
        if (self->sys[i].arch == arch && self->sys[i].nr == nr)
            return &self->sys[i];
    return NULL;
}

static int arch_supported(Lane *self, uint32_t arch)
{
    for (int i = 0; i < self->narch; i++)
        if (self->arches[i] == arch)
            return 1;
    return 0;
}

/* the outcome of one event, computed before anything is committed */
typedef struct {
    PyObject *row;         /* the row (new ref), or NULL */
    const char *skip;      /* a TableStats.skip reason, or NULL */
    int table;             /* 1 socket_events, 2 process_events */
    int self_event;        /* the event of an excluded pid */
} Outcome;

#define BAIL 1

static int is_excluded(Lane *self, const Tok *tok, int *err)
{
    if (tok == NULL)
        return 0;
    PyObject *s = PyUnicode_DecodeASCII(tok->v, tok->vl, "strict");
    if (s == NULL) {
        *err = 1;
        return 0;
    }
    int r = PySet_Contains(self->exclude, s);
    Py_DECREF(s);
    if (r < 0) {
        *err = 1;
        return 0;
    }
    return r;
}

/* the SYSCALL fields both tables need (collector.tables.syscall.read_syscall) */
typedef struct {
    PyObject *exe;
    long long ids[11]; /* pid ppid uid auid euid fsuid suid gid egid fsgid sgid */
    int success;
} SysInfo;

static const char *const ID_FIELDS[11] = {"pid", "ppid", "uid", "auid", "euid", "fsuid", "suid", "gid", "egid", "fsgid", "sgid"};
enum { I_PID, I_PPID, I_UID, I_AUID, I_EUID, I_FSUID, I_SUID, I_GID, I_EGID, I_FSGID, I_SGID };

static int read_info(const Tok *st, int nst, SysInfo *info)
{
    const Tok *exe = field(st, nst, "exe");
    if (exe == NULL)
        return BAIL;
    for (int i = 0; i < 11; i++) {
        const Tok *t = field(st, nst, ID_FIELDS[i]);
        if (t == NULL || parse_udec(t->v, t->vl, &info->ids[i]) < 0)
            return BAIL;
    }
    const Tok *succ = field(st, nst, "success");
    if (succ == NULL || (succ->vl == 3 && memcmp(succ->v, "yes", 3) == 0))
        info->success = 1;
    else if (succ->vl == 2 && memcmp(succ->v, "no", 2) == 0)
        info->success = 0;
    else
        return BAIL;
    int bail = 0;
    info->exe = decode_str(exe->v, exe->vl, &bail);
    if (info->exe == NULL)
        return bail ? BAIL : -1;
    return 0;
}

static PyObject *ipv4_text(const unsigned char *a)
{
    char buf[16];
    int n = 0;
    for (int i = 0; i < 4; i++) {
        if (i)
            buf[n++] = '.';
        n += fmt_ull(buf + n, a[i]);
    }
    return PyUnicode_DecodeASCII(buf, n, "strict");
}

static PyObject *ipv6_text(const unsigned char *a)
{
    /* osquery's spelling: eight groups of four lower-case hex digits, never compressed */
    static const char hx[] = "0123456789abcdef";
    char buf[40];
    int k = 0;
    for (int i = 0; i < 16; i++) {
        if (i && i % 2 == 0)
            buf[k++] = ':';
        buf[k++] = hx[a[i] >> 4];
        buf[k++] = hx[a[i] & 15];
    }
    return PyUnicode_FromStringAndSize(buf, k);
}

/* socket_events (collector.tables.socket_events.row_from_syscall) */
static int socket_row(Lane *self, const SysEntry *se, const Tok *st, int nst, SysInfo *info, uint32_t arch,
                      Rec *recs, int nrec, long long sec, Outcome *out)
{
    int is_accept = se->kind == K_ACCEPT;
    int bind = se->kind == K_BIND;
    PyObject *status;
    long success;
    if (info->success) {
        status = self->s_succeeded;
        success = 1;
    } else {
        const Tok *ex = field(st, nst, "exit");
        long long code;
        if (ex == NULL || parse_sdec(ex->v, ex->vl, &code) < 0)
            return BAIL;
        if (se->kind == K_CONNECT && code == -self->einprogress) {
            status = self->s_in_progress;
            success = 1;
        } else if (is_accept && code == -self->eagain && self->allow_null_accept) {
            status = self->s_no_client;
            success = 1;
        } else if (!self->allow_failed) {
            out->skip = "socket_failed_syscall";
            return 0;
        } else {
            status = self->s_failed;
            success = 0;
        }
    }
    Rec *sock = NULL;
    for (int i = 0; i < nrec; i++)
        if (recs[i].t == R_SOCKADDR) {
            sock = &recs[i];
            break;
        }
    if (sock == NULL) {
        if (!is_accept)
            return BAIL;
        out->skip = "accept_without_address";
        return 0;
    }
    Tok toks[MAXTOK];
    int nt = tokenize(sock->body, sock->blen, toks);
    if (nt < 0)
        return BAIL;
    const Tok *sa = field(toks, nt, "saddr");
    if (sa == NULL)
        return BAIL;
    unsigned char data[1024];
    Py_ssize_t dl = unhex(sa->v, sa->vl, data, sizeof data);
    if (dl < 2)
        return BAIL; /* not hex, odd, (null), too long or too short: Python's drops */
    int family = (arch & AUDIT_ARCH_LE) ? (data[0] | data[1] << 8) : (data[0] << 8 | data[1]);
    int need = family == 2 ? 16 : family == 10 ? 24 : family == 16 ? 12 : 2;
    if (dl < need)
        return BAIL;
    if (family == 16) {
        out->skip = "netlink";
        return 0;
    }
    if (family != 1 && family != 2 && family != 10) {
        out->skip = "unsupported_family";
        return 0;
    }
    PyObject *address = NULL, *socket_path = NULL;
    long port = 0;
    if (family == 1) {
        if (!self->allow_unix) {
            out->skip = "unix_disabled";
            return 0;
        }
        const unsigned char *name = data + 2;
        Py_ssize_t nl = dl - 2;
        if (nl > 0 && name[0] == 0) {
            name++;
            nl--;
        }
        const unsigned char *z = memchr(name, 0, (size_t)nl);
        if (z != NULL)
            nl = z - name;
        if (nl == 0) {
            out->skip = "unix_unnamed";
            return 0;
        }
        socket_path = PyUnicode_DecodeUTF8((const char *)name, nl, "replace");
        if (socket_path == NULL)
            return -1;
        address = self->s_empty;
        Py_INCREF(address);
    } else {
        port = data[2] << 8 | data[3];
        address = family == 2 ? ipv4_text(data + 4) : ipv6_text(data + 8);
        if (address == NULL)
            return -1;
        socket_path = self->s_empty;
        Py_INCREF(socket_path);
    }
    PyObject *fd;
    const Tok *a0 = field(st, nst, "a0");
    if (a0 == NULL) {
        fd = self->s_empty;
        Py_INCREF(fd);
    } else {
        unsigned long long v;
        if (parse_uhex(a0->v, a0->vl, &v) < 0) {
            Py_DECREF(address);
            Py_DECREF(socket_path);
            return BAIL;
        }
        char buf[24];
        fd = PyUnicode_DecodeASCII(buf, fmt_ull(buf, v), "strict");
        if (fd == NULL) {
            Py_DECREF(address);
            Py_DECREF(socket_path);
            return -1;
        }
    }
    /* SocketEventsRow(action, pid, path, fd, auid, success, family, protocol, local_address,
       remote_address, local_port, remote_port, socket, time, uptime, eid, status) */
    PyObject *local_a, *remote_a;
    long local_p = 0, remote_p = 0;
    if (bind) {
        local_a = address;
        remote_a = self->s_zero;
        local_p = port;
    } else {
        local_a = self->s_zero;
        remote_a = address;
        remote_p = port;
    }
    PyObject *eid, *uptime;
    if (row_clock(self, &eid, &uptime) < 0) {
        Py_DECREF(address);
        Py_DECREF(socket_path);
        Py_DECREF(fd);
        return -1;
    }
    PyObject *args[17] = {
        is_accept ? self->s_accept : se->name, PyLong_FromLongLong(info->ids[I_PID]), info->exe, fd,
        PyLong_FromLongLong(info->ids[I_AUID]), PyLong_FromLong(success), PyLong_FromLong(family), PyLong_FromLong(0),
        local_a, remote_a, PyLong_FromLong(local_p), PyLong_FromLong(remote_p), socket_path, PyLong_FromLongLong(sec),
        uptime, eid, status,
    };
    static const char own[17] = {0, 1, 0, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 0};
    out->row = make_row(self->sock_cls, args, own, 17); /* releases fd, socket_path, eid, uptime */
    Py_DECREF(address);
    if (out->row == NULL)
        return -1;
    out->table = 1;
    return 0;
}

/* the argument vector of one EXECVE record "argc=N a0=.. a1=.." as one str; BAIL otherwise */
static int exec_cmdline(const Tok *toks, int nt, PyObject **cmdline, long long *size)
{
    long long argc;
    if (nt < 1 || toks[0].kl != 4 || memcmp(toks[0].k, "argc", 4) != 0 || parse_udec(toks[0].v, toks[0].vl, &argc) < 0)
        return BAIL;
    if (argc != nt - 1 || argc > MAXARGV)
        return BAIL;
    int ascii = 1;
    Py_ssize_t total = 0;
    for (int i = 1; i < nt; i++) {
        char want[16];
        int wl = snprintf(want, sizeof want, "a%d", i - 1);
        const Tok *t = &toks[i];
        if (t->kl != wl || memcmp(t->k, want, (size_t)wl) != 0)
            return BAIL;
        if (t->v[0] == '"') {
            total += t->vl - 2;
        } else if (t->vl == 6 && memcmp(t->v, "(null)", 6) == 0) {
            /* b"" */
        } else {
            if (t->vl % 2)
                return BAIL;
            for (Py_ssize_t j = 0; j < t->vl; j += 2) {
                int a = hexval((unsigned char)t->v[j]), b = hexval((unsigned char)t->v[j + 1]);
                if (a < 0 || b < 0)
                    return BAIL;
                if (a >= 8)
                    ascii = 0;
            }
            total += t->vl / 2;
        }
    }
    total += argc > 0 ? argc - 1 : 0;
    if (ascii) {
        /* every argument ASCII: one buffer, one str */
        PyObject *s = PyUnicode_New(total, 127);
        if (s == NULL)
            return -1;
        Py_UCS1 *d = PyUnicode_1BYTE_DATA(s);
        Py_ssize_t k = 0;
        for (int i = 1; i < nt; i++) {
            const Tok *t = &toks[i];
            if (i > 1)
                d[k++] = ' ';
            if (t->v[0] == '"') {
                memcpy(d + k, t->v + 1, (size_t)(t->vl - 2));
                k += t->vl - 2;
            } else if (!(t->vl == 6 && memcmp(t->v, "(null)", 6) == 0)) {
                for (Py_ssize_t j = 0; j < t->vl; j += 2)
                    d[k++] = (Py_UCS1)(hexval((unsigned char)t->v[j]) << 4 | hexval((unsigned char)t->v[j + 1]));
            }
        }
        *cmdline = s;
        *size = total;
        return 0;
    }
    /* non-ASCII bytes: decode each argument on its own (U+FFFD per bad sequence), then join */
    PyObject *parts = PyList_New(0);
    if (parts == NULL)
        return -1;
    for (int i = 1; i < nt; i++) {
        int bail = 0;
        PyObject *a = decode_str(toks[i].v, toks[i].vl, &bail);
        if (a == NULL) {
            Py_DECREF(parts);
            return bail ? BAIL : -1;
        }
        int r = PyList_Append(parts, a);
        Py_DECREF(a);
        if (r < 0) {
            Py_DECREF(parts);
            return -1;
        }
    }
    PyObject *sep = PyUnicode_FromString(" ");
    if (sep == NULL) {
        Py_DECREF(parts);
        return -1;
    }
    PyObject *s = PyUnicode_Join(sep, parts);
    Py_DECREF(sep);
    Py_DECREF(parts);
    if (s == NULL)
        return -1;
    Py_ssize_t n;
    if (PyUnicode_AsUTF8AndSize(s, &n) == NULL) {
        Py_DECREF(s);
        return -1;
    }
    *cmdline = s;
    *size = n;
    return 0;
}

/* process_events (collector.tables.process_events.row_from_syscall) */
static int process_row(Lane *self, const SysEntry *se, const Tok *st, int nst, SysInfo *info, Rec *recs, int nrec,
                       long long sec, Outcome *out)
{
    if (!info->success) {
        out->skip = "process_failed_syscall";
        return 0;
    }
    long long pid = info->ids[I_PID], parent = info->ids[I_PPID];
    if (se->kind == K_FORK || se->kind == K_CLONE) {
        const Tok *ex = field(st, nst, "exit");
        long long child;
        if (ex == NULL || parse_sdec(ex->v, ex->vl, &child) < 0)
            return BAIL;
        pid = child;
        parent = info->ids[I_PID];
        if (se->kind == K_CLONE) {
            const Tok *a0 = field(st, nst, "a0");
            unsigned long long flags;
            if (a0 == NULL || parse_uhex(a0->v, a0->vl, &flags) < 0)
                return BAIL;
            if (flags & KA_CLONE_THREAD) {
                out->skip = "clone_thread";
                return 0;
            }
            if (flags & KA_CLONE_PARENT)
                parent = info->ids[I_PPID];
        }
    }
    PyObject *mode = self->s_empty, *cmdline = self->s_empty, *cwd = self->s_empty;
    long long cmdline_size = 0, ouid = 0, ogid = 0;
    Py_INCREF(mode);
    Py_INCREF(cmdline);
    Py_INCREF(cwd);
    int r = 0;
    if (se->kind == K_EXEC) {
        Rec *cwd_rec = NULL, *exec_rec = NULL, *path_rec = NULL, *first_path = NULL;
        int nexec = 0;
        Tok toks[MAXTOK];
        for (int i = 0; i < nrec; i++) {
            if (recs[i].t == R_CWD && cwd_rec == NULL)
                cwd_rec = &recs[i];
            else if (recs[i].t == R_EXECVE) {
                exec_rec = &recs[i];
                nexec++;
            }
        }
        if (cwd_rec == NULL || nexec != 1)
            goto bail;
        /* the PATH of the executable: item=0, else the first PATH */
        Tok ptoks[MAXTOK];
        int npt = 0;
        for (int i = 0; i < nrec && path_rec == NULL; i++) {
            if (recs[i].t != R_PATH)
                continue;
            int nt = tokenize(recs[i].body, recs[i].blen, toks);
            if (nt < 0)
                goto bail;
            if (first_path == NULL) {
                first_path = &recs[i];
                memcpy(ptoks, toks, sizeof(Tok) * (size_t)nt);
                npt = nt;
            }
            const Tok *item = field(toks, nt, "item");
            if (item != NULL && item->vl == 1 && item->v[0] == '0') {
                path_rec = &recs[i];
                memcpy(ptoks, toks, sizeof(Tok) * (size_t)nt);
                npt = nt;
            }
        }
        if (path_rec == NULL)
            path_rec = first_path;
        if (path_rec == NULL)
            goto bail;
        int nt = tokenize(exec_rec->body, exec_rec->blen, toks);
        if (nt < 0)
            goto bail;
        Py_DECREF(cmdline);
        cmdline = NULL;
        r = exec_cmdline(toks, nt, &cmdline, &cmdline_size);
        if (r != 0) {
            cmdline = NULL;
            goto done;
        }
        nt = tokenize(cwd_rec->body, cwd_rec->blen, toks);
        if (nt < 0)
            goto bail;
        const Tok *c = field(toks, nt, "cwd");
        if (c != NULL) {
            int bail = 0;
            Py_DECREF(cwd);
            cwd = decode_str(c->v, c->vl, &bail);
            if (cwd == NULL) {
                r = bail ? BAIL : -1;
                goto done;
            }
        }
        const Tok *m = field(ptoks, npt, "mode");
        if (m != NULL) {
            if (m->v[0] == '"')
                goto bail;
            Py_DECREF(mode);
            mode = PyUnicode_DecodeASCII(m->v, m->vl, "strict");
            if (mode == NULL) {
                r = -1;
                goto done;
            }
        }
        const Tok *ou = field(ptoks, npt, "ouid"), *og = field(ptoks, npt, "ogid");
        if ((ou != NULL && parse_udec(ou->v, ou->vl, &ouid) < 0) || (og != NULL && parse_udec(og->v, og->vl, &ogid) < 0))
            goto bail;
    }
    /* ProcessEventsRow(pid, path, mode, cmdline, cmdline_size, env, env_count, env_size, cwd,
       auid, uid, euid, gid, egid, owner_uid, owner_gid, atime, mtime, ctime, btime, overflows,
       parent, time, uptime, eid, fsuid, suid, fsgid, sgid, syscall) */
    PyObject *eid, *uptime;
    if (row_clock(self, &eid, &uptime) < 0) {
        r = -1;
        goto done;
    }
    PyObject *args[30] = {
        PyLong_FromLongLong(pid), info->exe, mode, cmdline, PyLong_FromLongLong(cmdline_size), self->s_empty,
        PyLong_FromLong(0), PyLong_FromLong(0), cwd, PyLong_FromLongLong(info->ids[I_AUID]),
        PyLong_FromLongLong(info->ids[I_UID]), PyLong_FromLongLong(info->ids[I_EUID]),
        PyLong_FromLongLong(info->ids[I_GID]), PyLong_FromLongLong(info->ids[I_EGID]), PyLong_FromLongLong(ouid),
        PyLong_FromLongLong(ogid), PyLong_FromLong(0), PyLong_FromLong(0), PyLong_FromLong(0), PyLong_FromLong(0),
        self->s_empty, PyLong_FromLongLong(parent), PyLong_FromLongLong(sec), uptime, eid,
        PyLong_FromLongLong(info->ids[I_FSUID]), PyLong_FromLongLong(info->ids[I_SUID]),
        PyLong_FromLongLong(info->ids[I_FSGID]), PyLong_FromLongLong(info->ids[I_SGID]), se->name,
    };
    static const char own[30] = {1, 0, 0, 0, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0};
    out->row = make_row(self->proc_cls, args, own, 30);
    r = out->row == NULL ? -1 : 0;
    out->table = 2;
    goto done;
bail:
    r = BAIL;
done:
    Py_XDECREF(mode);
    Py_XDECREF(cmdline);
    Py_XDECREF(cwd);
    return r;
}

/*
 * Decide one complete event: 0 with *out filled (row, skip, self, or nothing: not ours),
 * BAIL, or -1 with a Python error set.
 */
static int decide(Lane *self, Rec *recs, int nrec, long long sec, Outcome *out)
{
    Rec *sys = NULL;
    for (int i = 0; i < nrec; i++)
        if (recs[i].t == R_SYSCALL) {
            if (sys != NULL)
                return BAIL; /* a duplicate SYSCALL: the publisher counts it */
            sys = &recs[i];
        }
    if (sys == NULL)
        return BAIL;
    Tok st[MAXTOK];
    int nst = tokenize(sys->body, sys->blen, st);
    if (nst < 0)
        return BAIL;
    if (self->exclude != Py_None) {
        int err = 0;
        int mine = is_excluded(self, field(st, nst, "pid"), &err) || (!err && is_excluded(self, field(st, nst, "ppid"), &err));
        if (err)
            return -1;
        if (mine) {
            out->self_event = 1;
            return 0;
        }
    }
    const Tok *ta = field(st, nst, "arch"), *tn = field(st, nst, "syscall");
    unsigned long long arch;
    long long nr;
    if (ta == NULL || tn == NULL || parse_uhex(ta->v, ta->vl, &arch) < 0 || arch > 0xffffffffULL ||
        parse_udec(tn->v, tn->vl, &nr) < 0)
        return BAIL;
    if (!arch_supported(self, (uint32_t)arch))
        return BAIL;
    const SysEntry *se = lookup_syscall(self, (uint32_t)arch, nr);
    if (se == NULL)
        return 0; /* a syscall no enabled table reads: not ours, nothing counted */
    SysInfo info;
    int r = read_info(st, nst, &info);
    if (r != 0)
        return r;
    if (se->kind <= K_ACCEPT)
        r = socket_row(self, se, st, nst, &info, (uint32_t)arch, recs, nrec, sec, out);
    else
        r = process_row(self, se, st, nst, &info, recs, nrec, sec, out);
    Py_DECREF(info.exe);
    return r;
}

/* the publisher's _complete for an event completed by its EOE (no other event open) */
static int complete(Lane *self, PyObject *key)
{
    if (PyDict_SetItem(self->recent, key, self->s_eoe) < 0)
        return -1;
    PyObject *entry = PyTuple_New(2), *clock = PyLong_FromLongLong(self->clock);
    if (entry == NULL || clock == NULL) {
        Py_XDECREF(entry);
        Py_XDECREF(clock);
        return -1;
    }
    PyTuple_SET_ITEM(entry, 0, Py_NewRef(key));
    PyTuple_SET_ITEM(entry, 1, clock);
    PyObject_GC_UnTrack(entry);
    PyObject *r = PyObject_CallOneArg(self->order_append, entry);
    Py_DECREF(entry);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    if (PyDict_GET_SIZE(self->recent) > self->recent_limit) {
        PyObject *old = PyObject_CallNoArgs(self->order_popleft);
        if (old == NULL)
            return -1;
        int d = PyDict_DelItem(self->recent, PyTuple_GET_ITEM(old, 0));
        Py_DECREF(old);
        if (d < 0)
            return -1;
    }
    long long horizon = self->clock - self->recent_window;
    for (;;) {
        PyObject *first = PySequence_GetItem(self->order, 0);
        if (first == NULL)
            return -1;
        long long t = PyLong_AsLongLong(PyTuple_GET_ITEM(first, 1));
        Py_DECREF(first);
        if (t == -1 && PyErr_Occurred())
            return -1;
        if (t >= horizon)
            break;
        PyObject *old = PyObject_CallNoArgs(self->order_popleft);
        if (old == NULL)
            return -1;
        int d = PyDict_DelItem(self->recent, PyTuple_GET_ITEM(old, 0));
        Py_DECREF(old);
        if (d < 0)
            return -1;
    }
    return 0;
}

/* publisher.is_single_record_type: a whole event on its own (the lane leaves those alone) */
static int is_single(long t)
{
    return (t >= 1100 && t <= 1299) || (t >= 2100 && t <= 2999) || t == 2000;
}

/* the lane's kind of a record type number: R_SYSCALL..R_EOE, R_OTHER, or -1 (Python's) */
static int kind_of(Lane *self, long number);

static int type_index(Lane *self, long number)
{
    for (int i = 0; i < NTYPES; i++)
        if (self->typenum[i] == number)
            return i;
    return -1;
}

static int kind_of(Lane *self, long number)
{
    int t = type_index(self, number);
    if (t >= 0)
        return t;
    if (number < 1000 || is_single(number))
        return -1;
    return R_OTHER;
}

/* "SEC.MSEC:SERIAL)" then ": ", ":", " " or the end; the body after it. 0, or -1 (bail) */
static int parse_stamp(const char *p, const char *end, long long *sec, long long *msec, long long *serial,
                       const char **body)
{
    const char *s = p;
    while (p < end && *p >= '0' && *p <= '9')
        p++;
    if (p >= end || *p != '.' || parse_udec(s, p - s, sec) < 0)
        return -1;
    s = ++p;
    while (p < end && *p >= '0' && *p <= '9')
        p++;
    if (p >= end || *p != ':' || parse_udec(s, p - s, msec) < 0)
        return -1;
    s = ++p;
    while (p < end && *p >= '0' && *p <= '9')
        p++;
    if (p >= end || *p != ')' || parse_udec(s, p - s, serial) < 0)
        return -1;
    p++;
    if (p < end && *p == ':') {
        p++;
        if (p < end && *p == ' ')
            p++;
    } else if (p < end && *p == ' ') {
        p++;
    } else if (p != end) {
        return -1;
    }
    *body = p;
    return 0;
}

/* every byte printable ASCII (0x20-0x7e), eight at a time (the bit-twiddling "hasless"/"hasmore") */
static int printable(const char *p, Py_ssize_t n)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x;
        memcpy(&x, p + i, 8);
        if (((x - ones * 0x20) & ~x & highs) | (((x + ones * (127 - 0x7e)) | x) & highs))
            return 0;
    }
    for (; i < n; i++)
        if ((unsigned char)p[i] < 0x20 || (unsigned char)p[i] > 0x7e)
            return 0;
    return 1;
}

/* a line "type=NAME msg=audit(SEC.MSEC:SERIAL): body" of printable ASCII; 0 or -1 (bail) */
static int parse_line(Lane *self, const char *p, const char *end, Rec *rec, long long *sec, long long *msec,
                      long long *serial)
{
    if (end - p > MAXLINE || end - p < 5 || memcmp(p, "type=", 5) != 0 || !printable(p, end - p))
        return -1;
    const char *name = p + 5;
    const char *sp = memchr(name, ' ', (size_t)(end - name));
    if (sp == NULL)
        return -1;
    size_t nl = (size_t)(sp - name);
    int t = -1;
    long num = 0;
    for (int i = 0; i < NTYPES; i++)
        if (strlen(TYPE_NAMES[i]) == nl && memcmp(TYPE_NAMES[i], name, nl) == 0) {
            t = i;
            num = self->typenum[i];
            break;
        }
    if (t < 0) {
        /* another type by its auditd name (UNKNOWN[n] and numbers are the Python path's) */
        PyObject *key = PyUnicode_DecodeASCII(name, (Py_ssize_t)nl, "strict");
        if (key == NULL) {
            PyErr_Clear();
            return -1;
        }
        PyObject *v = PyDict_GetItemWithError(self->names, key);
        Py_DECREF(key);
        if (v == NULL) {
            PyErr_Clear();
            return -1;
        }
        num = PyLong_AsLong(v);
        if (num == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            return -1;
        }
        t = kind_of(self, num);
        if (t != R_OTHER)
            return -1;
    }
    if (end - sp < 11 || memcmp(sp, " msg=audit(", 11) != 0)
        return -1;
    const char *body;
    if (parse_stamp(sp + 11, end, sec, msec, serial, &body) < 0)
        return -1;
    rec->t = t;
    rec->num = num;
    rec->body = body;
    rec->blen = end - body;
    return 0;
}

/* a netlink record payload "audit(SEC.MSEC:SERIAL): body" (trailing NUL/newlines dropped) */
static int parse_payload(const char *p, Py_ssize_t n, Rec *rec, long long *sec, long long *msec, long long *serial)
{
    while (n > 0 && (p[n - 1] == '\0' || p[n - 1] == '\n' || p[n - 1] == '\r'))
        n--;
    if (n > MAXLINE || n < 6 || memcmp(p, "audit(", 6) != 0 || !printable(p, n))
        return -1;
    const char *body;
    if (parse_stamp(p + 6, p + n, sec, msec, serial, &body) < 0)
        return -1;
    rec->body = body;
    rec->blen = p + n - body;
    return 0;
}

/* ---- groups: events whose records interleave ------------------------------------------------ */

/*
 * Records of concurrent syscalls interleave (two CPUs ending a syscall at once): the lane
 * takes a *group*, from a point where nothing is open to the next such point, as long as the
 * group is small (MAXOPEN events, MAXGREC records), every event in it ends with its EOE, and
 * no event could time out inside it (its records span at most the publisher's timeout).
 * Events complete in EOE order, as in the publisher, and the rows come out in that order.
 */
#define MAXOPEN 8
#define MAXGREC 160

enum { SRC_ERR = -1, SRC_END = 0, SRC_REC = 1, SRC_BAIL = 2 };

typedef struct {
    long long sec, msec, serial, u, done_clock;
    int done, nrec;
    Rec recs[MAXREC];
    Outcome out;
} Ev;

/* where records come from: lines of a text buffer, or a sequence of netlink messages */
typedef struct {
    const char *buf;
    Py_ssize_t len, pos;
    PyObject **items;
    Py_ssize_t n, i;
    PyObject *keep[MAXGREC + 1]; /* the payloads this group's records point into */
    int nkeep;
} Src;

static PyObject *s_type_attr, *s_payload_attr, *s_uptime_attr;

static int src_next(Lane *self, Src *src, Rec *rec, long long *sec, long long *msec, long long *serial)
{
    if (src->items == NULL) {
        if (src->pos >= src->len)
            return SRC_END;
        const char *line = src->buf + src->pos;
        const char *nlp = memchr(line, '\n', (size_t)(src->len - src->pos));
        if (nlp == NULL)
            return SRC_END; /* a partial line: the caller brings the rest */
        if (parse_line(self, line, nlp, rec, sec, msec, serial) < 0)
            return SRC_BAIL;
        src->pos = nlp - src->buf + 1;
        return SRC_REC;
    }
    if (src->i >= src->n)
        return SRC_END;
    if (src->nkeep > MAXGREC)
        return SRC_BAIL;
    PyObject *msg = src->items[src->i];
    PyObject *tobj = PyObject_GetAttr(msg, s_type_attr);
    if (tobj == NULL)
        return SRC_ERR;
    long tn = PyLong_AsLong(tobj);
    Py_DECREF(tobj);
    if (tn == -1 && PyErr_Occurred())
        return SRC_ERR;
    int t = kind_of(self, tn);
    if (t < 0)
        return SRC_BAIL;
    PyObject *payload = PyObject_GetAttr(msg, s_payload_attr);
    if (payload == NULL)
        return SRC_ERR;
    src->keep[src->nkeep++] = payload;
    if (!PyBytes_Check(payload) ||
        parse_payload(PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload), rec, sec, msec, serial) < 0)
        return SRC_BAIL;
    rec->t = t;
    rec->num = tn;
    src->i++;
    return SRC_REC;
}

static void src_release(Src *src)
{
    for (int i = 0; i < src->nkeep; i++)
        Py_DECREF(src->keep[i]);
    src->nkeep = 0;
}

static void drop_outcomes(Ev *evs, int nev, PyObject **keys)
{
    for (int i = 0; i < nev; i++) {
        Py_CLEAR(evs[i].out.row);
        Py_CLEAR(keys[i]);
    }
}

/* what an event's outcome does once it is committed: the self count, a skip, or the row */
static int emit_outcome(Lane *self, Outcome *out)
{
    if (out->self_event) {
        self->n_self++;
        return 0;
    }
    if (out->skip != NULL) {
        PyObject *res = PyObject_CallFunction(self->skip, "s", out->skip);
        if (res == NULL)
            return -1;
        Py_DECREF(res);
        return 0;
    }
    PyObject *row = out->row;
    out->row = NULL;
    if (row == NULL)
        return 0;
    if (self->uptime != Py_None) {
        PyObject *up = PyObject_CallNoArgs(self->uptime);
        if (up == NULL || PyObject_SetAttr(row, s_uptime_attr, up) < 0) {
            Py_XDECREF(up);
            Py_DECREF(row);
            return -1;
        }
        Py_DECREF(up);
    }
    if (out->table == 1)
        self->n_rows_sock++;
    else
        self->n_rows_proc++;
    if (self->emit == Py_None) {
        Py_DECREF(row);
        return 0;
    }
    PyObject *rows = PyList_New(1);
    if (rows == NULL) {
        Py_DECREF(row);
        return -1;
    }
    PyList_SET_ITEM(rows, 0, row); /* steals */
    PyObject *res = PyObject_CallOneArg(self->emit, rows);
    Py_DECREF(rows);
    if (res == NULL)
        return -1;
    Py_DECREF(res);
    return 0;
}

/*
 * One group from src's position: 1 taken, 0 stopped (*bailed set: hand it to Python; unset:
 * the input ends inside it), -1 with a Python error. Nothing changes unless it is taken.
 */
static int scan_group(Lane *self, Src *src, int *bailed)
{
    Ev evs[MAXOPEN];
    int order[MAXOPEN];
    PyObject *keys[MAXOPEN] = {NULL};
    int nev = 0, nopen = 0, ngrec = 0, ncomp = 0;
    long long types[NTYPES] = {0};
    long others[MAXGREC + 1];
    int nothers = 0;
    long long clock = self->clock, clock1 = 0, min_t = 0, max_t = 0;
    long long ref = self->max_seen, boundary = self->boundary; /* the tracker's max_seen and boundary */
    int nlate = 0;
    int ret = 0;

    for (;;) {
        Rec rec;
        long long sec, msec, serial;
        int r = src_next(self, src, &rec, &sec, &msec, &serial);
        if (r == SRC_ERR)
            return -1;
        if (r == SRC_END)
            return 0;
        if (r == SRC_BAIL || ++ngrec > MAXGREC)
            goto bail;
        int e = -1;
        for (int i = 0; i < nev; i++)
            if (evs[i].serial == serial && evs[i].sec == sec && evs[i].msec == msec) {
                e = i;
                break;
            }
        if (e >= 0 && evs[e].done)
            goto bail; /* a record after its event's EOE: late */
        if (e < 0) {
            if (rec.t == R_EOE || nev == MAXOPEN)
                goto bail; /* an orphan EOE, or too many at once */
            /* its serial, unwrapped as the tracker does when the event starts (publisher._start):
               above everything settled so far, the settling inside this group included */
            long long delta = (serial - ref) & 0xffffffffLL;
            if (delta >= (1LL << 31))
                delta -= 1LL << 32;
            long long u = ref + delta;
            if (self->held) {
                /* the publisher holds older events open (a record that waits for its timeout):
                   the boundary stays below them, so new serials only join the seen set; one
                   below the oldest held, or seen already, is the Python path's */
                if (u <= self->low || u <= boundary)
                    goto bail;
                PyObject *uo = PyLong_FromLongLong(u);
                if (uo == NULL)
                    goto error;
                int in = PySet_Contains(self->seen, uo);
                Py_DECREF(uo);
                if (in < 0)
                    goto error;
                if (in)
                    goto bail;
            } else if (u <= boundary) {
                /* a serial already settled (counted lost): the event arrives late and the count
                   is corrected (late_events); a reset (far later in time) or one below the
                   first serial is the Python path's */
                if (sec * 1000 + msec - clock > self->timeout || u <= self->origin)
                    goto bail;
                nlate++;
            }
            for (int j = 0; j < nev; j++)
                if (evs[j].u == u)
                    goto bail;
            if (u > ref)
                ref = u;
            e = nev++;
            evs[e].u = u;
            evs[e].sec = sec;
            evs[e].msec = msec;
            evs[e].serial = serial;
            evs[e].done = 0;
            evs[e].nrec = 0;
            evs[e].out = (Outcome){NULL, NULL, 0, 0};
            nopen++;
        }
        long long t = sec * 1000 + msec;
        if (self->any_open && t >= self->next_expiry)
            goto bail; /* the publisher would expire what it holds open here */
        if (t > clock)
            clock = t;
        if (ngrec == 1) {
            clock1 = clock;
            min_t = max_t = t;
        } else if (t < min_t) {
            min_t = t;
        } else if (t > max_t) {
            max_t = t;
        }
        if (rec.t == R_OTHER)
            others[nothers++] = rec.num;
        else
            types[rec.t]++;
        if (rec.t == R_EOE) {
            evs[e].done = 1;
            evs[e].done_clock = clock;
            order[ncomp++] = e;
            if (--nopen == 0)
                break;
            /* the tracker settles up to the oldest serial still open (_SerialTracker.settle) */
            long long low = 0;
            int any = 0;
            for (int j = 0; j < nev; j++)
                if (!evs[j].done && (!any || evs[j].u < low)) {
                    low = evs[j].u;
                    any = 1;
                }
            if (!self->held && low - 1 > boundary)
                boundary = low - 1;
            continue;
        }
        if (evs[e].nrec == MAXREC)
            goto bail;
        evs[e].recs[evs[e].nrec++] = rec;
    }
    if (max_t - min_t > self->timeout)
        goto bail; /* an event of the group could time out inside it */

    long long max_u = ref;
    for (int i = 0; i < nev; i++) {
        keys[i] = make_key(evs[i].serial, evs[i].sec, evs[i].msec);
        if (keys[i] == NULL)
            goto error;
        int seen = PyDict_Contains(self->recent, keys[i]);
        if (seen == 0 && self->any_open)
            seen = PyDict_Contains(self->open, keys[i]); /* a record of an event held open */
        if (seen < 0)
            goto error;
        if (seen)
            goto bail;
    }
    self->eid_cursor = self->next_eid;
    for (int k = 0; k < ncomp; k++) {
        Ev *ev = &evs[order[k]];
        int r = decide(self, ev->recs, ev->nrec, ev->sec, &ev->out);
        if (r < 0)
            goto error;
        if (r == BAIL)
            goto bail;
    }

    /* commit: the publisher's clock and deadline, the tracker, the counters, then each event
       in EOE order (the completed-id window, then its row) */
    if (nev == 1) {
        long long c0 = self->clock;
        if (clock > c0 && clock >= self->next_expiry)
            self->next_expiry = 1LL << 62;
    }
    if (clock1 + self->timeout + 1 < self->next_expiry)
        self->next_expiry = clock1 + self->timeout + 1;
    if (self->held) {
        /* the serials join the tracker's seen set; they are settled when the held event ends */
        for (int i = 0; i < nev; i++) {
            PyObject *uo = PyLong_FromLongLong(evs[i].u);
            if (uo == NULL || PySet_Add(self->seen, uo) < 0) {
                Py_XDECREF(uo);
                goto error;
            }
            Py_DECREF(uo);
        }
        if (max_u > self->max_seen)
            self->max_seen = max_u;
    } else {
        self->n_lost += (max_u - self->boundary) - nev;
        self->n_late += nlate;
        self->boundary = self->max_seen = max_u;
    }
    for (int i = 0; i < NTYPES; i++)
        self->n_types[i] += types[i];
    for (int i = 0; i < nothers; i++) {
        PyObject *k = PyLong_FromLong(others[i]);
        if (k == NULL)
            goto error;
        PyObject *old = PyDict_GetItemWithError(self->others, k);
        long long n = old == NULL ? 0 : PyLong_AsLongLong(old);
        PyObject *v = (old == NULL && PyErr_Occurred()) ? NULL : PyLong_FromLongLong(n + 1);
        if (v == NULL || PyDict_SetItem(self->others, k, v) < 0) {
            Py_DECREF(k);
            Py_XDECREF(v);
            goto error;
        }
        Py_DECREF(k);
        Py_DECREF(v);
    }
    self->n_events += nev;
    self->next_eid = self->eid_cursor;
    for (int k = 0; k < ncomp; k++) {
        Ev *ev = &evs[order[k]];
        self->clock = ev->done_clock;
        if (complete(self, keys[order[k]]) < 0 || emit_outcome(self, &ev->out) < 0) {
            self->clock = clock;
            goto error;
        }
    }
    self->clock = clock;
    ret = 1;
    goto done;
bail:
    *bailed = 1;
    ret = 0;
    goto done;
error:
    ret = -1;
done:
    drop_outcomes(evs, nev, keys);
    return ret;
}

/* groups from src until the input ends inside one or one is handed back: (position, bailed) */
static int scan(Lane *self, Src *src, Py_ssize_t *stop, int *bailed)
{
    for (;;) {
        Py_ssize_t start = src->items == NULL ? src->pos : src->i;
        int r = scan_group(self, src, bailed);
        src_release(src);
        if (r < 0)
            return -1;
        if (r == 0) {
            *stop = start;
            if (*bailed)
                self->n_bail++;
            return 0;
        }
        if ((src->items == NULL && src->pos >= src->len) || (src->items != NULL && src->i >= src->n)) {
            *stop = src->items == NULL ? src->pos : src->i;
            return 0;
        }
    }
}

/* scan_text(buf, pos) -> (pos, bailed): events of audit.log text from pos on */
static PyObject *Lane_scan_text(Lane *self, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t pos, stop = 0;
    if (!PyArg_ParseTuple(args, "y*n", &view, &pos))
        return NULL;
    Src src = {.buf = view.buf, .len = view.len, .pos = pos};
    int bailed = 0;
    int r = scan(self, &src, &stop, &bailed);
    PyBuffer_Release(&view);
    if (r < 0)
        return NULL;
    return Py_BuildValue("(ni)", stop, bailed);
}

/* scan_messages(msgs, i) -> (i, bailed): events of netlink record messages from msgs[i] on */
static PyObject *Lane_scan_messages(Lane *self, PyObject *args)
{
    PyObject *seq;
    Py_ssize_t pos, stop = 0;
    if (!PyArg_ParseTuple(args, "On", &seq, &pos))
        return NULL;
    PyObject *fast = PySequence_Fast(seq, "scan_messages needs a sequence of messages");
    if (fast == NULL)
        return NULL;
    Src src = {.items = PySequence_Fast_ITEMS(fast), .n = PySequence_Fast_GET_SIZE(fast), .i = pos};
    int bailed = 0;
    int r = scan(self, &src, &stop, &bailed);
    Py_DECREF(fast);
    if (r < 0)
        return NULL;
    return Py_BuildValue("(ni)", stop, bailed);
}

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
