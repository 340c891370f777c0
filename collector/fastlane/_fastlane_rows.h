/* kaudit fast lane: one event to its socket_events/process_events row (part of _fastlane.c, which includes it once) */
#ifndef _FASTLANE_ROWS_H
#define _FASTLANE_ROWS_H

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

#endif
