"""The kernel's numbers: include/uapi/linux/audit.h, errno values, and audit_field_valid()'s field sets.

Names are spelled as the kernel spells them, so that a kernel constant named in a comment
anywhere in the model can be found here; values come from the generated tables
(collector/protocol/_tables.py) where the headers have them.
"""

from __future__ import annotations

import struct

from collector.protocol._tables import ERRNO, FILTERS, OPERATORS, RECORD_TYPES, RULE_FIELDS
from collector.protocol.netlink import errno_name  # noqa: F401 - re-exported by simulator.kernel
from collector.protocol.status import KERNEL_STATUS_FIELDS

# --- constants the kernel uses (include/uapi/linux/audit.h and friends) ---------------------

AUDIT_OFF, AUDIT_ON, AUDIT_LOCKED = 0, 1, 2
AUDIT_FAIL_SILENT, AUDIT_FAIL_PRINTK, AUDIT_FAIL_PANIC = 0, 1, 2
AUDIT_UID_UNSET = 0xFFFFFFFF
AUDIT_SID_UNSET = 0xFFFFFFFF
AUDIT_NLGRP_READLOG = 1
AUDIT_NLGRP_MAX = 1
AUDIT_FIRST_USER_MSG, AUDIT_LAST_USER_MSG = 1100, 1199
AUDIT_FIRST_USER_MSG2, AUDIT_LAST_USER_MSG2 = 2100, 2999
AUDIT_MESSAGE_TEXT_MAX = 8560
AUDIT_MAX_FIELDS = 64
AUDIT_BITMASK_SIZE = 64
AUDIT_SYSCALL_CLASSES = 16
AUDIT_MAX_KEY_LEN = 256
AUDIT_LAST_FEATURE = 1
AUDIT_FEATURE_NAMES = ("only_unset_loginuid", "loginuid_immutable")
AUDIT_FEATURE_VERSION = 1
PATH_MAX = 4096
RULE_DATA_SIZE = 4 * (3 + 4 * AUDIT_BITMASK_SIZE + 1)  # sizeof(struct audit_rule_data) = 1040
STATUS_SIZE = 4 * KERNEL_STATUS_FIELDS  # sizeof(struct audit_status) on 5.9+ = 44
DEFAULT_HZ = 250
DEFAULT_RCVBUF = 212992  # net.core.rmem_default

T = RECORD_TYPES
AUDIT_GET, AUDIT_SET = T["GET"], T["SET"]
AUDIT_LIST, AUDIT_ADD, AUDIT_DEL = T["LIST"], T["ADD"], T["DEL"]
AUDIT_USER, AUDIT_SIGNAL_INFO = T["USER"], T["SIGNAL_INFO"]
AUDIT_ADD_RULE, AUDIT_DEL_RULE, AUDIT_LIST_RULES = T["ADD_RULE"], T["DEL_RULE"], T["LIST_RULES"]
AUDIT_TRIM, AUDIT_MAKE_EQUIV = T["TRIM"], T["MAKE_EQUIV"]
AUDIT_TTY_GET, AUDIT_TTY_SET = T["TTY_GET"], T["TTY_SET"]
AUDIT_SET_FEATURE, AUDIT_GET_FEATURE = T["SET_FEATURE"], T["GET_FEATURE"]
AUDIT_USER_AVC, AUDIT_USER_TTY = T["USER_AVC"], T["USER_TTY"]
AUDIT_CONFIG_CHANGE = T["CONFIG_CHANGE"]
AUDIT_FEATURE_CHANGE = T.get("FEATURE_CHANGE", 1328)
AUDIT_REPLACE = T.get("REPLACE", 1329)
AUDIT_EVENT_LISTENER = T.get("EVENT_LISTENER", 1335)

STATUS_ENABLED, STATUS_FAILURE, STATUS_PID = 0x1, 0x2, 0x4
STATUS_RATE_LIMIT, STATUS_BACKLOG_LIMIT, STATUS_BACKLOG_WAIT_TIME = 0x8, 0x10, 0x20
STATUS_LOST, STATUS_BACKLOG_WAIT_TIME_ACTUAL = 0x40, 0x80

F = RULE_FIELDS
FILTER_USER, FILTER_TASK, FILTER_ENTRY = FILTERS["USER"], FILTERS["TASK"], FILTERS["ENTRY"]
FILTER_EXIT, FILTER_EXCLUDE, FILTER_FS = FILTERS["EXIT"], FILTERS["EXCLUDE"], FILTERS["FS"]
FILTER_URING_EXIT = FILTERS.get("URING_EXIT", 7)
FILTER_PREPEND = FILTERS["PREPEND"]
AUDIT_NR_FILTERS = 8
AUDIT_NEVER, AUDIT_POSSIBLE, AUDIT_ALWAYS = 0, 1, 2
AUDIT_LOGINUID_LEGACY = 0x1  # krule->pflags

OP_EQ, OP_NE = OPERATORS["EQUAL"], OPERATORS["NOT_EQUAL"]
OP_BITMASK, OP_BITTEST = OPERATORS["BIT_MASK"], OPERATORS["BIT_TEST"]
OP_LT, OP_GT = OPERATORS["LESS_THAN"], OPERATORS["GREATER_THAN"]
OP_LE, OP_GE = OPERATORS["LESS_THAN_OR_EQUAL"], OPERATORS["GREATER_THAN_OR_EQUAL"]
VALID_OPS = frozenset({OP_EQ, OP_NE, OP_BITMASK, OP_BITTEST, OP_LT, OP_GT, OP_LE, OP_GE})

E = ERRNO
EPERM, ENOENT, EINVAL, EEXIST = E["EPERM"], E["ENOENT"], E["EINVAL"], E["EEXIST"]
EACCES, ENOTDIR, EOPNOTSUPP = E["EACCES"], E["ENOTDIR"], E["EOPNOTSUPP"]
ECONNREFUSED, EADDRINUSE, ENAMETOOLONG = E["ECONNREFUSED"], E["EADDRINUSE"], E["ENAMETOOLONG"]

_CONTROL_TYPES = frozenset(
    {AUDIT_GET, AUDIT_SET, AUDIT_GET_FEATURE, AUDIT_SET_FEATURE, AUDIT_LIST_RULES, AUDIT_ADD_RULE,
     AUDIT_DEL_RULE, AUDIT_SIGNAL_INFO, AUDIT_TTY_GET, AUDIT_TTY_SET, AUDIT_TRIM, AUDIT_MAKE_EQUIV}
)
_LSM_FIELDS = frozenset(
    F[n] for n in ("SUBJ_USER", "SUBJ_ROLE", "SUBJ_TYPE", "SUBJ_SEN", "SUBJ_CLR",
                   "OBJ_USER", "OBJ_ROLE", "OBJ_TYPE", "OBJ_LEV_LOW", "OBJ_LEV_HIGH")
)
_UID_FIELDS = frozenset(F[n] for n in ("LOGINUID", "UID", "EUID", "SUID", "FSUID", "OBJ_UID"))
_GID_FIELDS = frozenset(F[n] for n in ("GID", "EGID", "SGID", "FSGID", "OBJ_GID"))
_STRING_FIELDS = _LSM_FIELDS | {F["WATCH"], F["DIR"], F["FILTERKEY"], F["EXE"]}
# audit_field_valid(): fields on which every operator is valid ...
_ANY_OP_FIELDS = frozenset(F[n] for n in ("ARG0", "ARG1", "ARG2", "ARG3", "PERS", "DEVMINOR"))
# ... fields on which every operator but the bit operators is valid ...
_NO_BITOP_FIELDS = frozenset(
    F[n] for n in ("UID", "EUID", "SUID", "FSUID", "LOGINUID", "OBJ_UID", "GID", "EGID", "SGID", "FSGID",
                   "OBJ_GID", "PID", "MSGTYPE", "PPID", "DEVMAJOR", "EXIT", "SUCCESS", "INODE",
                   "SESSIONID", "SUBJ_SEN", "SUBJ_CLR", "OBJ_LEV_LOW", "OBJ_LEV_HIGH", "SADDR_FAM")
)
# ... and fields that only take = and !=.
_EQ_ONLY_FIELDS = frozenset(
    F[n] for n in ("SUBJ_USER", "SUBJ_ROLE", "SUBJ_TYPE", "OBJ_USER", "OBJ_ROLE", "OBJ_TYPE", "WATCH", "DIR",
                   "FILTERKEY", "LOGINUID_SET", "ARCH", "FSTYPE", "PERM", "FILETYPE", "FIELD_COMPARE", "EXE")
)

_HDR = struct.Struct("=IHHII")
_U32 = struct.Struct("=I")
_I32 = struct.Struct("=i")

