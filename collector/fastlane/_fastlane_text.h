/* kaudit fast lane: record text - numbers, hex, fields, headers (part of _fastlane.c, which includes it once) */
#ifndef _FASTLANE_TEXT_H
#define _FASTLANE_TEXT_H

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


#endif
