/* the oldest id of the completed-id window out of it: _recent_order.popleft(), del _recent[id] */
static int forget_oldest(Lane *self)
{
    PyObject *old = PyObject_CallNoArgs(self->order_popleft);
    if (old == NULL)
        return -1;
    int d = PyDict_DelItem(self->recent, PyTuple_GET_ITEM(old, 0));
    Py_DECREF(old);
    return d;
}

/* kaudit fast lane: groups of events and the publisher's bookkeeping (part of _fastlane.c, which includes it once) */
#ifndef _FASTLANE_GROUPS_H
#define _FASTLANE_GROUPS_H

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
    if (PyDict_GET_SIZE(self->recent) > self->recent_limit && forget_oldest(self) < 0)
        return -1;
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
        if (forget_oldest(self) < 0)
            return -1;
    }
    return 0;
}

/* publisher.is_single_record_type: a whole event on its own (the lane leaves those alone) */

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


#endif
