/* kaudit fast lane: record kinds, limits, and the Lane object (part of _fastlane.c, which includes it once) */
#ifndef _FASTLANE_TYPES_H
#define _FASTLANE_TYPES_H

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


#endif
