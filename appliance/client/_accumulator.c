/*
 * appliance.client._accumulator: the producer's per-record path in C.
 *
 * One Producer.send() per record costs ~3 us in CPython (a Python frame,
 * murmur2 or the sticky lookup, the size sum, the lock, a future object, the
 * column appends): ~300k records/s, a third of the W1 target. This module
 * keeps the same objects and the same rules and does the common case in C:
 *
 *   Accumulator  base of record_accumulator.RecordAccumulator. Its fields
 *                (_open, _partitions, _buffered, _unfinished, _closing,
 *                batch_size, buffer_memory, partitioner, _lock) are C members
 *                that the Python code reads and writes as attributes, and
 *                send() is a C method (METH_FASTCALL: no Python frame).
 *   Batch        base of producer_batch.ProducerBatch: the columns (values,
 *                keys, timestamps, headers, callbacks), size and keyed.
 *   Future       base of producer_batch.RecordFuture: (_batch, _index); the
 *                methods stay in Python.
 *   RLock        a re-entrant lock that the accumulator's threading.Condition
 *                is built on, so that send() takes the very lock the sender
 *                thread and the Python methods take, without a Python call.
 *   murmur2      Kafka's Utils.murmur2 (appliance.partitioner.murmur2).
 *
 * The partition is chosen as choose_partition() does: an explicit one is
 * checked; the DefaultPartitioner's rules (murmur2 of a bytes key, the
 * topic's sticky partition) are done here; otherwise, a keyless record whose
 * topic has no sticky partition yet or any partitioner of the user's own,
 * the partitioner object is called from C with the same arguments, and
 * what it raises (RinglogError, ValueError) or an answer out of range makes
 * the same failed future.
 *
 * send() hands the call, unchanged, to the Python path (Producer._python_send,
 * the reference) whenever the record is not the common case: a topic whose
 * partition count is not known yet (the first record asks the appliance),
 * a key that is not bytes or None, a value other than bytes, bytearray,
 * memoryview or None, headers other than a list or tuple of (str,
 * bytes | None) tuples, a timestamp that is not an int in range, a closed
 * producer, a full buffer (the Python path blocks in _wait_for_room), or an
 * unusual call (unknown or repeated keywords). It decides that before
 * changing anything, so the Python path sees the state as if it had been
 * called directly; when the partitioner was already asked, it hands over to
 * Producer._place with the answer instead, so no partitioner is asked twice
 * for a record.
 *
 * (An answer that is an int in range but not a plain int, a bool say, is
 * also carried on with by _place.)
 *
 * Locking: everything send() reads and writes under the lock is what the
 * Python side changes under `_lock` (the Condition on an RLock of this
 * module, see RLock below: a thread that waits for it does so without the
 * GIL). The allocations a record needs (future, key tuple, timestamp) are
 * made before taking it, so that in the common case no Python code (a
 * garbage collection's finalizer) runs while it is held.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <pythread.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define RECORD_OVERHEAD 16 /* record_accumulator.RECORD_OVERHEAD */
#define SEND_ARGS 7        /* topic, value, key, partition, timestamp, headers, on_delivery */

/* Set once by configure(): the Python classes send() makes and recognises. */
static PyTypeObject *record_future_type;   /* producer_batch.RecordFuture */
static PyTypeObject *default_partitioner;  /* partitioner.DefaultPartitioner */
static PyObject *delivery_factory;         /* producer._on_delivery */
static PyObject *refused_errors;           /* (RinglogError, ValueError): a failed future */

static PyObject *send_names[SEND_ARGS];    /* interned parameter names */
static PyObject *str_python_send, *str_open_batch, *str_close_batch, *str_wake, *str_sticky,
    *str_lock, *str_place, *str_failed;
static PyObject *empty_tuple;

/* --- murmur2 ------------------------------------------------------------- */

/* Kafka's Utils.murmur2 (seed 0x9747b28c, m 0x5bd1e995, r 24) as uint32. */
static uint32_t
murmur2_hash(const unsigned char *data, Py_ssize_t length)
{
    const uint32_t m = 0x5bd1e995;
    uint32_t h = 0x9747b28cu ^ (uint32_t)length;
    Py_ssize_t words = length >> 2;
    for (Py_ssize_t i = 0; i < words; i++) {
        const unsigned char *p = data + 4 * i; /* little-endian words, as Java reads them */
        uint32_t k = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                     (uint32_t)p[3] << 24;
        k *= m;
        k ^= k >> 24;
        k *= m;
        h *= m;
        h ^= k;
    }
    const unsigned char *tail = data + (words << 2);
    switch (length & 3) {
    case 3:
        h ^= (uint32_t)tail[2] << 16;
        /* fall through */
    case 2:
        h ^= (uint32_t)tail[1] << 8;
        /* fall through */
    case 1:
        h ^= tail[0];
        h *= m;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return h;
}

PyDoc_STRVAR(murmur2_doc,
"murmur2($module, data, /)\n--\n\n"
"Kafka's Utils.murmur2 of a bytes-like object, as a signed 32-bit int\n"
"(appliance.partitioner.murmur2, in C).");

static PyObject *
murmur2(PyObject *module, PyObject *data)
{
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    uint32_t h = murmur2_hash(view.buf, view.len);
    PyBuffer_Release(&view);
    return PyLong_FromLong((long)(int32_t)h);
}

/* --- RLock --------------------------------------------------------------- */

/* A re-entrant lock with _thread.RLock's interface and the methods
 * threading.Condition looks for, cheap enough to take per record.
 *
 * Every acquire and release happens with the GIL held (from Python, or from
 * send()), so the GIL guards owner, count and waiters: taking a free lock
 * or leaving one nobody waits for is a few plain stores, no atomic
 * instruction (a semaphore round costs ~70 ns on the reference machine, a
 * fifth of send()). Only a thread that finds the lock taken sleeps, on
 * `wakeup`, with the GIL released. A release that leaves the lock free with
 * waiters posts `wakeup`, unless a post is still unconsumed (`signalled`):
 * a woken waiter may wait a while for the GIL, while the owner takes and
 * leaves the lock many times, and one post is enough. The waiter that
 * consumes the post clears `signalled` (with the GIL), then takes the lock
 * if it is free and otherwise sleeps again (another thread took it first,
 * as with a mutex). No wake-up is lost: a waiter sleeps only after seeing an
 * owner with `signalled` clear or a post pending, and that owner's release
 * posts. A post nobody consumed (its waiter timed out) costs a later waiter
 * one spurious wake-up, which it checks. */
typedef struct {
    PyObject_HEAD
    PyThread_type_lock wakeup; /* held while nobody is to wake; released to wake one */
    unsigned long owner;
    unsigned long count;
    Py_ssize_t waiters;
    char signalled;            /* wakeup posted, not yet consumed */
    PyObject *weakreflist;
} RLockObject;

static long long
monotonic_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

/* Take the lock for thread `tid`, waiting at most timeout_us (-1: no limit,
 * 0: not at all) with the GIL released; when `interruptible`, signal
 * handlers run while it waits. PY_LOCK_INTR: a handler raised (or the count
 * would overflow), the exception is set. */
static PyLockStatus
rlock_take(RLockObject *self, unsigned long tid, long long timeout_us, int interruptible)
{
    if (self->count == 0) {
        self->owner = tid;
        self->count = 1;
        return PY_LOCK_ACQUIRED;
    }
    if (self->owner == tid) {
        if (self->count == (unsigned long)-1) {
            PyErr_SetString(PyExc_OverflowError, "Internal lock count overflowed");
            return PY_LOCK_INTR;
        }
        self->count++;
        return PY_LOCK_ACQUIRED;
    }
    if (timeout_us == 0)
        return PY_LOCK_FAILURE;
    long long deadline = timeout_us > 0 ? monotonic_us() + timeout_us : 0;
    PyLockStatus r;
    self->waiters++;
    for (;;) {
        Py_BEGIN_ALLOW_THREADS
        r = PyThread_acquire_lock_timed(self->wakeup, (PY_TIMEOUT_T)timeout_us, interruptible);
        Py_END_ALLOW_THREADS
        if (r == PY_LOCK_ACQUIRED)
            self->signalled = 0; /* the post was this thread's */
        if (self->count == 0) { /* free, whether woken, timed out or interrupted */
            r = PY_LOCK_ACQUIRED;
            break;
        }
        if (r == PY_LOCK_INTR && Py_MakePendingCalls() < 0)
            break;
        if (timeout_us > 0) {
            timeout_us = deadline - monotonic_us();
            if (timeout_us <= 0) {
                r = PY_LOCK_FAILURE;
                break;
            }
        }
    }
    self->waiters--;
    if (r == PY_LOCK_ACQUIRED) {
        self->owner = tid;
        self->count = 1;
    }
    return r;
}

/* Leave the lock free for good (count reached 0): wake a waiter. */
static void
rlock_freed(RLockObject *self)
{
    self->owner = 0;
    if (self->waiters > 0 && !self->signalled) {
        self->signalled = 1;
        PyThread_release_lock(self->wakeup);
    }
}

/* Take `self` for this thread, however long it takes; -1 with an exception
 * set only when a signal handler raised. */
static int
rlock_enter(RLockObject *self)
{
    return rlock_take(self, PyThread_get_thread_ident(), -1, 1) == PY_LOCK_ACQUIRED ? 0 : -1;
}

/* Release once; the caller holds it. */
static void
rlock_exit(RLockObject *self)
{
    if (--self->count == 0)
        rlock_freed(self);
}

static PyObject *
rlock_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    if (PyTuple_GET_SIZE(args) || (kwds != NULL && PyDict_GET_SIZE(kwds))) {
        PyErr_SetString(PyExc_TypeError, "RLock() takes no arguments");
        return NULL;
    }
    RLockObject *self = (RLockObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->wakeup = PyThread_allocate_lock();
    if (self->wakeup == NULL) {
        Py_DECREF(self);
        PyErr_SetString(PyExc_MemoryError, "cannot allocate lock");
        return NULL;
    }
    PyThread_acquire_lock(self->wakeup, 1); /* nobody to wake yet */
    return (PyObject *)self;
}

static void
rlock_dealloc(RLockObject *self)
{
    if (self->weakreflist != NULL)
        PyObject_ClearWeakRefs((PyObject *)self);
    if (self->wakeup != NULL) {
        /* Unlock before freeing, as _thread does: some pthread
         * implementations refuse to destroy a held mutex. No thread waits:
         * a waiter holds a reference through the method it called. */
        if (!self->signalled)
            PyThread_release_lock(self->wakeup);
        PyThread_free_lock(self->wakeup);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
rlock_acquire(RLockObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"blocking", "timeout", NULL};
    int blocking = 1;
    double timeout = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|pd:acquire", kwlist, &blocking, &timeout))
        return NULL;
    if (!blocking && timeout != -1) {
        PyErr_SetString(PyExc_ValueError, "can't specify a timeout for a non-blocking call");
        return NULL;
    }
    if (timeout < 0 && timeout != -1) {
        PyErr_SetString(PyExc_ValueError, "timeout value must be a non-negative number");
        return NULL;
    }
    long long timeout_us = -1;
    if (!blocking)
        timeout_us = 0;
    else if (timeout >= 0) {
        if (timeout * 1e6 >= (double)PY_TIMEOUT_MAX) {
            PyErr_SetString(PyExc_OverflowError, "timeout value is too large");
            return NULL;
        }
        timeout_us = (long long)(timeout * 1e6 + 0.999);
    }
    PyLockStatus r = rlock_take(self, PyThread_get_thread_ident(), timeout_us, 1);
    if (r == PY_LOCK_INTR)
        return NULL;
    return PyBool_FromLong(r == PY_LOCK_ACQUIRED);
}

static PyObject *
rlock_release(RLockObject *self, PyObject *Py_UNUSED(ignored))
{
    if (self->count == 0 || self->owner != PyThread_get_thread_ident()) {
        PyErr_SetString(PyExc_RuntimeError, "cannot release un-acquired lock");
        return NULL;
    }
    rlock_exit(self);
    Py_RETURN_NONE;
}

static PyObject *
rlock_exit_method(RLockObject *self, PyObject *args)
{
    return rlock_release(self, NULL);
}

static PyObject *
rlock_is_owned(RLockObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(self->count > 0 && self->owner == PyThread_get_thread_ident());
}

/* Condition.wait(): let go of every level at once, and take them back. */
static PyObject *
rlock_release_save(RLockObject *self, PyObject *Py_UNUSED(ignored))
{
    if (self->count == 0) {
        PyErr_SetString(PyExc_RuntimeError, "cannot release un-acquired lock");
        return NULL;
    }
    unsigned long owner = self->owner, count = self->count;
    self->count = 0;
    rlock_freed(self);
    return Py_BuildValue("kk", count, owner);
}

static PyObject *
rlock_acquire_restore(RLockObject *self, PyObject *state)
{
    unsigned long count, owner;
    if (!PyArg_ParseTuple(state, "kk:_acquire_restore", &count, &owner))
        return NULL;
    if (count == 0) {
        PyErr_SetString(PyExc_ValueError, "_acquire_restore needs a count of at least 1");
        return NULL;
    }
    /* As _thread's: no signal stops it (Condition.wait must get the lock back). */
    if (rlock_take(self, owner, -1, 0) != PY_LOCK_ACQUIRED)
        return NULL; /* only the count overflow, which a restore cannot meet */
    self->count = count;
    Py_RETURN_NONE;
}

static PyObject *
rlock_repr(RLockObject *self)
{
    return PyUnicode_FromFormat("<%s %s owner=%lu count=%lu at %p>",
                                self->count ? "locked" : "unlocked", Py_TYPE(self)->tp_name,
                                self->owner, self->count, self);
}

static PyMethodDef rlock_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))rlock_acquire, METH_VARARGS | METH_KEYWORDS,
     "acquire(blocking=True, timeout=-1): as threading.RLock.acquire."},
    {"release", (PyCFunction)rlock_release, METH_NOARGS, "As threading.RLock.release."},
    {"__enter__", (PyCFunction)(void (*)(void))rlock_acquire, METH_VARARGS | METH_KEYWORDS,
     NULL},
    {"__exit__", (PyCFunction)rlock_exit_method, METH_VARARGS, NULL},
    {"_is_owned", (PyCFunction)rlock_is_owned, METH_NOARGS, NULL},
    {"_release_save", (PyCFunction)rlock_release_save, METH_NOARGS, NULL},
    {"_acquire_restore", (PyCFunction)rlock_acquire_restore, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject RLockType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "appliance.client._accumulator.RLock",
    .tp_doc = "A re-entrant lock like threading.RLock, that the C send() takes directly.",
    .tp_basicsize = sizeof(RLockObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = rlock_new,
    .tp_dealloc = (destructor)rlock_dealloc,
    .tp_repr = (reprfunc)rlock_repr,
    .tp_weaklistoffset = offsetof(RLockObject, weakreflist),
    .tp_methods = rlock_methods,
};

/* --- Batch: the columns of a ProducerBatch --------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *values;     /* list */
    PyObject *keys;       /* list */
    PyObject *timestamps; /* list */
    PyObject *headers;    /* list, or NULL/None until a record has headers */
    PyObject *callbacks;  /* list of (index, callable) */
    Py_ssize_t size;
    char keyed;
} BatchObject;

static int
batch_traverse(BatchObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->values);
    Py_VISIT(self->keys);
    Py_VISIT(self->timestamps);
    Py_VISIT(self->headers);
    Py_VISIT(self->callbacks);
    return 0;
}

static int
batch_clear(BatchObject *self)
{
    Py_CLEAR(self->values);
    Py_CLEAR(self->keys);
    Py_CLEAR(self->timestamps);
    Py_CLEAR(self->headers);
    Py_CLEAR(self->callbacks);
    return 0;
}

static void
batch_dealloc(BatchObject *self)
{
    PyObject_GC_UnTrack(self);
    batch_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef batch_members[] = {
    {"values", T_OBJECT_EX, offsetof(BatchObject, values), 0, "the records' values"},
    {"keys", T_OBJECT_EX, offsetof(BatchObject, keys), 0, "the records' keys"},
    {"timestamps", T_OBJECT_EX, offsetof(BatchObject, timestamps), 0,
     "the records' timestamps, ms"},
    {"headers", T_OBJECT, offsetof(BatchObject, headers), 0,
     "the records' header tuples; None until a record has headers"},
    {"callbacks", T_OBJECT_EX, offsetof(BatchObject, callbacks), 0,
     "(index, callable) to run when the batch settles"},
    {"size", T_PYSSIZET, offsetof(BatchObject, size), 0, "bytes, as the accumulator counts"},
    {"keyed", T_BOOL, offsetof(BatchObject, keyed), 0, "some key is not None"},
    {NULL},
};

static PyTypeObject BatchType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "appliance.client._accumulator.Batch",
    .tp_doc = "The columns of a producer batch, kept where the C send() appends to them.",
    .tp_basicsize = sizeof(BatchObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)batch_dealloc,
    .tp_traverse = (traverseproc)batch_traverse,
    .tp_clear = (inquiry)batch_clear,
    .tp_members = batch_members,
};

/* --- Future: one record's handle ------------------------------------------ */

typedef struct {
    PyObject_HEAD
    PyObject *batch;
    Py_ssize_t index;
} FutureObject;

/* RecordFuture, the Python subclass configure() names, adds no slot, dict,
 * weak reference or finalizer (configure checks), so its instances are
 * Futures as laid out here: they get this deallocator instead of the generic
 * one of Python classes, and a free list, since send() makes one per record
 * and the caller usually drops it at once. */
#define FREE_FUTURES 128
static FutureObject *free_futures[FREE_FUTURES];
static int free_future_count;

static void
record_future_dealloc(FutureObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    Py_CLEAR(self->batch);
    if (type == record_future_type && free_future_count < FREE_FUTURES)
        free_futures[free_future_count++] = self;
    else
        type->tp_free((PyObject *)self);
    Py_DECREF(type); /* an instance of a heap type holds a reference to it */
}

/* A RecordFuture whose batch is still to be set. */
static FutureObject *
new_record_future(void)
{
    if (free_future_count > 0) {
        FutureObject *self = free_futures[--free_future_count];
        PyObject_Init((PyObject *)self, record_future_type);
        self->index = 0;
        PyObject_GC_Track(self);
        return self;
    }
    return (FutureObject *)record_future_type->tp_alloc(record_future_type, 0);
}

static PyObject *
future_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"batch", "index", NULL};
    PyObject *batch;
    Py_ssize_t index;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "On:RecordFuture", kwlist, &batch, &index))
        return NULL;
    FutureObject *self = type == record_future_type ? new_record_future()
                                                    : (FutureObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->batch = Py_NewRef(batch);
    self->index = index;
    return (PyObject *)self;
}

static int
future_traverse(FutureObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->batch);
    return 0;
}

static int
future_clear(FutureObject *self)
{
    Py_CLEAR(self->batch);
    return 0;
}

static void
future_dealloc(FutureObject *self)
{
    PyObject_GC_UnTrack(self);
    Py_CLEAR(self->batch);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef future_members[] = {
    {"_batch", T_OBJECT_EX, offsetof(FutureObject, batch), READONLY, "the record's batch"},
    {"_index", T_PYSSIZET, offsetof(FutureObject, index), READONLY,
     "the record's place in its batch"},
    {NULL},
};

static PyTypeObject FutureType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "appliance.client._accumulator.Future",
    .tp_doc = "Future(batch, index): where a record's outcome will be; the base of RecordFuture.",
    .tp_basicsize = sizeof(FutureObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = future_new,
    .tp_dealloc = (destructor)future_dealloc,
    .tp_traverse = (traverseproc)future_traverse,
    .tp_clear = (inquiry)future_clear,
    .tp_members = future_members,
};

/* --- Accumulator ---------------------------------------------------------- */

/* Where PEP 509's dict version tag is there to read (it is deprecated from
 * 3.12), send() remembers the batch it found for the last (topic,
 * partition) and trusts it while `_open` is unchanged since: every change
 * to a dict (a batch opened, closed, or the dict cleared) gives it a new,
 * never reused version. Elsewhere it looks the batch up each time. */
#if PY_VERSION_HEX < 0x030C0000
#define OPEN_VERSION(d) (((PyDictObject *)(d))->ma_version_tag)
#endif

typedef struct {
    PyObject_HEAD
    PyObject *open;        /* _open: {(topic, partition): batch} */
    PyObject *partitions;  /* _partitions: {topic: partition count} */
    PyObject *condition;   /* _lock */
    RLockObject *rlock;    /* the condition's lock, when it is an RLock of this module */
    PyObject *partitioner;
    PyObject *sticky;      /* a DefaultPartitioner's _sticky {topic: partition}, else NULL */
    PyObject *batch_key;   /* the last (topic, partition) looked up, reused when it repeats */
    PyObject *open_batch;  /* _open[batch_key] as of open_version of the dict at open_seen */
    void *open_seen;       /* only compared, never dereferenced */
    uint64_t open_version;
    Py_ssize_t buffered;
    Py_ssize_t unfinished;
    Py_ssize_t batch_size;
    Py_ssize_t buffer_memory;
    Py_ssize_t fallbacks;  /* send() calls handed to the Python path */
    char closing;
} AccumulatorObject;

static int
accumulator_traverse(AccumulatorObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->open);
    Py_VISIT(self->partitions);
    Py_VISIT(self->condition);
    Py_VISIT(self->rlock);
    Py_VISIT(self->partitioner);
    Py_VISIT(self->sticky);
    Py_VISIT(self->batch_key);
    Py_VISIT(self->open_batch);
    return 0;
}

static int
accumulator_clear(AccumulatorObject *self)
{
    Py_CLEAR(self->open);
    Py_CLEAR(self->partitions);
    Py_CLEAR(self->condition);
    Py_CLEAR(self->rlock);
    Py_CLEAR(self->partitioner);
    Py_CLEAR(self->sticky);
    Py_CLEAR(self->batch_key);
    Py_CLEAR(self->open_batch);
    return 0;
}

static void
accumulator_dealloc(AccumulatorObject *self)
{
    PyObject_GC_UnTrack(self);
    accumulator_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
accumulator_get_lock(AccumulatorObject *self, void *closure)
{
    if (self->condition == NULL) {
        PyErr_SetString(PyExc_AttributeError, "_lock");
        return NULL;
    }
    return Py_NewRef(self->condition);
}

/* _lock is a threading.Condition; send() takes its underlying lock (the
 * Condition's `_lock`) itself when that is an RLock of this module. */
static int
accumulator_set_lock(AccumulatorObject *self, PyObject *value, void *closure)
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete _lock");
        return -1;
    }
    PyObject *inner = PyObject_GetAttr(value, str_lock);
    if (inner == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError))
            return -1;
        PyErr_Clear();
    }
    else if (!Py_IS_TYPE(inner, &RLockType))
        Py_CLEAR(inner);
    Py_XSETREF(self->rlock, (RLockObject *)inner);
    Py_XSETREF(self->condition, Py_NewRef(value));
    return 0;
}

static PyObject *
accumulator_get_partitioner(AccumulatorObject *self, void *closure)
{
    if (self->partitioner == NULL) {
        PyErr_SetString(PyExc_AttributeError, "partitioner");
        return NULL;
    }
    return Py_NewRef(self->partitioner);
}

/* The DefaultPartitioner's rules are done in C (its sticky table read as
 * its own __call__ reads it); any other partitioner is called by the Python
 * path. */
static int
accumulator_set_partitioner(AccumulatorObject *self, PyObject *value, void *closure)
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete partitioner");
        return -1;
    }
    PyObject *sticky = NULL;
    if (default_partitioner != NULL && Py_IS_TYPE(value, default_partitioner)) {
        sticky = PyObject_GetAttr(value, str_sticky);
        if (sticky == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_AttributeError))
                return -1;
            PyErr_Clear();
        }
        else if (!PyDict_CheckExact(sticky))
            Py_CLEAR(sticky);
    }
    Py_XSETREF(self->sticky, sticky);
    Py_XSETREF(self->partitioner, Py_NewRef(value));
    return 0;
}

/* Wall-clock milliseconds as time.time_ns() // 1_000_000 gives them; the
 * int is reused while the millisecond lasts. */
static PyObject *
now_ms(void)
{
    static long long cached_ms = -1;
    static PyObject *cached;
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    long long ms = (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
    if (ms != cached_ms || cached == NULL) {
        PyObject *fresh = PyLong_FromLongLong(ms);
        if (fresh == NULL)
            return NULL;
        Py_XSETREF(cached, fresh);
        cached_ms = ms;
    }
    return Py_NewRef(cached);
}

/* The call as it came, to Producer._python_send. */
static PyObject *
fall_back(AccumulatorObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    self->fallbacks++;
    Py_ssize_t total = nargs + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0);
    PyObject *small[1 + 16];
    PyObject **stack = small;
    if (total > 16) {
        stack = PyMem_Malloc((size_t)(total + 1) * sizeof(PyObject *));
        if (stack == NULL)
            return PyErr_NoMemory();
    }
    stack[0] = (PyObject *)self;
    if (total)
        memcpy(stack + 1, args, (size_t)total * sizeof(PyObject *));
    PyObject *result = PyObject_VectorcallMethod(str_python_send, stack, (size_t)nargs + 1,
                                                 kwnames);
    if (stack != small)
        PyMem_Free(stack);
    return result;
}

/* The arguments by position; 0 when the call is not a plain one (too many,
 * an unknown or repeated keyword, no topic): the Python path then says so. */
static int
place_arguments(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                PyObject *slots[SEND_ARGS])
{
    if (nargs > SEND_ARGS)
        return 0;
    for (Py_ssize_t i = 0; i < nargs; i++)
        slots[i] = args[i];
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t j = 0; j < nkw; j++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, j);
        int at = -1;
        for (int i = 0; i < SEND_ARGS && at < 0; i++)
            if (name == send_names[i])
                at = i;
        for (int i = 0; i < SEND_ARGS && at < 0; i++)
            if (PyUnicode_Compare(name, send_names[i]) == 0)
                at = i;
        if (at < 0 || slots[at] != NULL)
            return 0;
        slots[at] = args[nargs + j];
    }
    return slots[0] != NULL;
}

/* What a record needs before the lock, each an owned reference. */
typedef struct {
    PyObject *chosen;   /* partition */
    PyObject *ts;       /* timestamp */
    PyObject *header;   /* tuple(headers), or NULL for no headers */
    PyObject *delivery; /* the batch callback for on_delivery, or NULL */
    PyObject *future;
    PyObject *key;      /* (topic, partition) */
    PyObject *refusal;  /* what the partitioner raised or chose wrongly: a failed future */
    Py_ssize_t size;
    int asked;          /* the partitioner was called: never again for this record */
} Pending;

static void
pending_clear(Pending *p)
{
    Py_CLEAR(p->chosen);
    Py_CLEAR(p->ts);
    Py_CLEAR(p->header);
    Py_CLEAR(p->delivery);
    Py_CLEAR(p->future);
    Py_CLEAR(p->key);
    Py_CLEAR(p->refusal);
}

/* The partition, as choose_partition(partitioner, topic, key, count, partition)
 * picks it: 1 with p->chosen set, 0 for the Python path, 2 when only the
 * partitioner can say (ask_partitioner). */
static int
choose(AccumulatorObject *self, PyObject *topic, PyObject *key, PyObject *partition,
       long count, Pending *p)
{
    int overflow;
    long chosen;
    if (partition != Py_None) {
        if (!PyLong_CheckExact(partition))
            return 0;
        chosen = PyLong_AsLongAndOverflow(partition, &overflow);
        if (overflow || chosen < 0 || chosen >= count)
            return 0; /* the Python path raises the "invalid partition" */
        p->chosen = Py_NewRef(partition);
        return 1;
    }
    if (self->sticky == NULL)
        return 2; /* not the DefaultPartitioner: its rules are its own */
    if (key != Py_None) {
        /* partition_for_key: to_positive(murmur2(key)) % count */
        if (!PyBytes_CheckExact(key))
            return 0;
        uint32_t h = murmur2_hash((const unsigned char *)PyBytes_AS_STRING(key),
                                  PyBytes_GET_SIZE(key));
        p->chosen = PyLong_FromLong((long)((h & 0x7FFFFFFFu) % (unsigned long)count));
        return p->chosen != NULL ? 1 : -1;
    }
    /* Keyless: the topic's sticky partition while it is usable; picking a
     * new one (random, under the partitioner's lock) is the partitioner's. */
    PyObject *sticky = PyDict_GetItemWithError(self->sticky, topic);
    if (sticky == NULL)
        return PyErr_Occurred() ? -1 : 2;
    if (!PyLong_CheckExact(sticky))
        return 2;
    chosen = PyLong_AsLongAndOverflow(sticky, &overflow);
    if (overflow || chosen < 0 || chosen >= count)
        return 2;
    p->chosen = Py_NewRef(sticky);
    return 1;
}

/* choose_partition's call of the partitioner and its check of the answer:
 * 1 with p->chosen set; 0 likewise but the answer is not a plain int (the
 * Python path carries on with it, _place); 2 with p->refusal set (a
 * RinglogError or ValueError, which send() turns into a failed future); -1
 * for any other error, which the caller gets, as from the Python path. */
static int
ask_partitioner(AccumulatorObject *self, PyObject *topic, PyObject *key, PyObject *count_obj,
                long count, Pending *p)
{
    PyObject *args[4] = {topic, key, count_obj, Py_None}; /* available: not known */
    PyObject *chosen = PyObject_Vectorcall(self->partitioner, args, 4, NULL);
    p->asked = 1;
    if (chosen == NULL) {
        if (refused_errors == NULL || !PyErr_ExceptionMatches(refused_errors))
            return -1;
        PyObject *type, *value, *traceback;
        PyErr_Fetch(&type, &value, &traceback);
        PyErr_NormalizeException(&type, &value, &traceback);
        if (value != NULL && traceback != NULL)
            PyException_SetTraceback(value, traceback);
        Py_XDECREF(type);
        Py_XDECREF(traceback);
        p->refusal = value;
        return value != NULL ? 2 : -1;
    }
    int in_range, overflow;
    if (PyLong_CheckExact(chosen)) {
        long at = PyLong_AsLongAndOverflow(chosen, &overflow);
        in_range = !overflow && at >= 0 && at < count;
    }
    else { /* not 0 <= chosen < num_partitions, as Python compares */
        PyObject *zero = PyLong_FromLong(0);
        in_range = zero ? PyObject_RichCompareBool(zero, chosen, Py_LE) : -1;
        Py_XDECREF(zero);
        if (in_range == 1)
            in_range = PyObject_RichCompareBool(chosen, count_obj, Py_LT);
        if (in_range < 0) {
            Py_DECREF(chosen);
            return -1;
        }
    }
    if (!in_range) {
        p->refusal = PyObject_CallFunction(
            PyExc_ValueError, "N",
            PyUnicode_FromFormat("partitioner %R chose partition %S for topic %R, which has "
                                 "%S partitions", self->partitioner, chosen, topic, count_obj));
        Py_DECREF(chosen);
        return p->refusal != NULL ? 2 : -1;
    }
    p->chosen = chosen;
    return PyLong_CheckExact(chosen) ? 1 : 0;
}

/* len(x or b""), as the Python path sums sizes, for None, bytes, bytearray
 * and memoryview: -1 for any other object (or a len() that fails), for the
 * Python path to handle. */
static Py_ssize_t
length_of(PyObject *x)
{
    if (x == Py_None)
        return 0;
    if (PyBytes_CheckExact(x))
        return PyBytes_GET_SIZE(x);
    if (PyByteArray_CheckExact(x))
        return PyByteArray_GET_SIZE(x);
    if (PyMemoryView_Check(x) && Py_IS_TYPE(x, &PyMemoryView_Type)) {
        Py_ssize_t n = PyObject_Length(x); /* elements, as len() counts them */
        if (n < 0)
            PyErr_Clear();
        return n;
    }
    return -1;
}

/* Size (the Python path's sum) and tuple(headers), for a list or tuple of
 * (str, bytes | None) pairs: 1, or 0 for the Python path. */
static int
measure_headers(PyObject *headers, Pending *p)
{
    if (headers == Py_None)
        return 1;
    if (!PyList_CheckExact(headers) && !PyTuple_CheckExact(headers))
        return 0;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(headers);
    PyObject **items = PySequence_Fast_ITEMS(headers);
    if (n == 0)
        return 1; /* falsy: no headers */
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = items[i];
        if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 2)
            return 0;
        PyObject *name = PyTuple_GET_ITEM(item, 0), *value = PyTuple_GET_ITEM(item, 1);
        if (!PyUnicode_CheckExact(name))
            return 0;
        Py_ssize_t length = PyUnicode_GetLength(name); /* len(str): code points */
        if (length < 0)
            return -1;
        p->size += length;
        if (value != Py_None) {
            if (!PyBytes_CheckExact(value))
                return 0;
            p->size += PyBytes_GET_SIZE(value);
        }
    }
    p->header = PySequence_Tuple(headers); /* a tuple comes back as itself */
    return p->header != NULL ? 1 : -1;
}

/* (topic, partition), the last one again if it repeats. */
static PyObject *
batch_key_for(AccumulatorObject *self, PyObject *topic, PyObject *chosen)
{
    PyObject *last = self->batch_key;
    if (last != NULL && PyTuple_GET_ITEM(last, 0) == topic) {
        PyObject *was = PyTuple_GET_ITEM(last, 1);
        if (was == chosen ||
            (PyLong_CheckExact(was) && PyLong_AsLong(was) == PyLong_AsLong(chosen)))
            return Py_NewRef(last);
    }
    PyObject *key = PyTuple_Pack(2, topic, chosen);
    if (key != NULL) {
        Py_XSETREF(self->batch_key, Py_NewRef(key));
        Py_CLEAR(self->open_batch); /* it was the old key's */
    }
    return key;
}

/* Everything up to the lock: 1 ready, 0 for the Python path (_place when
 * p->asked), 2 refused (p->refusal), -1 error. */
static int
prepare(AccumulatorObject *self, PyObject *const a[SEND_ARGS], Pending *p)
{
    PyObject *topic = a[0];
    PyObject *value = a[1] ? a[1] : Py_None, *key = a[2] ? a[2] : Py_None;
    PyObject *partition = a[3] ? a[3] : Py_None, *timestamp = a[4] ? a[4] : Py_None;
    PyObject *headers = a[5] ? a[5] : Py_None, *on_delivery = a[6] ? a[6] : Py_None;
    if (!PyUnicode_CheckExact(topic) || self->rlock == NULL || self->open == NULL ||
        !PyDict_CheckExact(self->open) || self->partitions == NULL ||
        !PyDict_CheckExact(self->partitions) || record_future_type == NULL)
        return 0;
    /* partitions_for_topic: known topics only; the first record asks */
    PyObject *count_obj = PyDict_GetItemWithError(self->partitions, topic);
    if (count_obj == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (!PyLong_CheckExact(count_obj))
        return 0;
    int overflow;
    long count = PyLong_AsLongAndOverflow(count_obj, &overflow);
    if (overflow || count < 1)
        return 0;
    int r = choose(self, topic, key, partition, count, p);
    if (r == 2)
        r = ask_partitioner(self, topic, key, count_obj, count, p);
    if (r != 1)
        return r;
    Py_ssize_t value_size = length_of(value);
    if (value_size < 0 || (key != Py_None && !PyBytes_CheckExact(key)))
        return 0;
    p->size = RECORD_OVERHEAD + value_size + (key != Py_None ? PyBytes_GET_SIZE(key) : 0);
    r = measure_headers(headers, p);
    if (r <= 0)
        return r;
    if (timestamp == Py_None) {
        if ((p->ts = now_ms()) == NULL)
            return -1;
    }
    else {
        if (!PyLong_CheckExact(timestamp))
            return 0;
        long long t = PyLong_AsLongLongAndOverflow(timestamp, &overflow);
        if (overflow || t < 0)
            return 0; /* _checked raises the ValueError */
        p->ts = Py_NewRef(timestamp);
    }
    if (on_delivery != Py_None) {
        if (delivery_factory == NULL)
            return 0;
        if ((p->delivery = PyObject_CallOneArg(delivery_factory, on_delivery)) == NULL)
            return -1;
    }
    if ((p->future = (PyObject *)new_record_future()) == NULL)
        return -1;
    if ((p->key = batch_key_for(self, topic, p->chosen)) == NULL)
        return -1;
    return 1;
}

static int
call_method(PyObject *self, PyObject *name, PyObject *arg)
{
    PyObject *stack[2] = {self, arg};
    PyObject *r = PyObject_VectorcallMethod(name, stack, arg ? 2 : 1, NULL);
    Py_XDECREF(r);
    return r != NULL ? 0 : -1;
}

/* The open batch for p->key, opened if there is none (under the lock). */
static PyObject *
find_batch(AccumulatorObject *self, PyObject *topic, Pending *p)
{
#ifdef OPEN_VERSION
    if (self->open_batch != NULL && p->key == self->batch_key &&
        self->open_seen == (void *)self->open && OPEN_VERSION(self->open) == self->open_version)
        return Py_NewRef(self->open_batch);
#endif
    PyObject *found = PyDict_GetItemWithError(self->open, p->key);
    PyObject *batch;
    if (found != NULL)
        batch = Py_NewRef(found);
    else if (PyErr_Occurred())
        return NULL;
    else {
        PyObject *stack[3] = {(PyObject *)self, topic, p->chosen};
        batch = PyObject_VectorcallMethod(str_open_batch, stack, 3, NULL);
        if (batch == NULL)
            return NULL;
        found = PyDict_GetItemWithError(self->open, p->key); /* _open_batch filed it? */
        if (found == NULL && PyErr_Occurred()) {
            Py_DECREF(batch);
            return NULL;
        }
    }
#ifdef OPEN_VERSION
    if (found == batch && p->key == self->batch_key) {
        Py_XSETREF(self->open_batch, Py_NewRef(batch));
        self->open_seen = self->open;
        self->open_version = OPEN_VERSION(self->open);
    }
#endif
    return batch;
}

/* Under the lock: put the record in its partition's open batch. 1 done, 0
 * for the Python path (nothing changed), -1 error. */
static int
append(AccumulatorObject *self, PyObject *const a[SEND_ARGS], Pending *p)
{
    PyObject *topic = a[0];
    PyObject *value = a[1] ? a[1] : Py_None, *key = a[2] ? a[2] : Py_None;
    if (self->closing)
        return 0; /* the Python path fails the record's future */
    if (self->buffered + p->size > self->buffer_memory && self->buffered)
        return 0; /* the Python path waits for room */
    PyObject *batch = find_batch(self, topic, p);
    if (batch == NULL)
        return -1;
    int r = 0;
    BatchObject *b = (BatchObject *)batch;
    if (!PyObject_TypeCheck(batch, &BatchType) || b->values == NULL ||
        !PyList_CheckExact(b->values) || b->keys == NULL || !PyList_CheckExact(b->keys) ||
        b->timestamps == NULL || !PyList_CheckExact(b->timestamps) ||
        (b->headers != NULL && b->headers != Py_None && !PyList_CheckExact(b->headers)) ||
        (p->delivery != NULL && (b->callbacks == NULL || !PyList_CheckExact(b->callbacks)))) {
        Py_CLEAR(self->open_batch);
        goto done; /* not a batch this module made: the Python path's to handle */
    }
    r = -1;
    Py_ssize_t index = PyList_GET_SIZE(b->values);
    if (PyList_Append(b->values, value) < 0 || PyList_Append(b->keys, key) < 0 ||
        PyList_Append(b->timestamps, p->ts) < 0)
        goto done;
    if (key != Py_None)
        b->keyed = 1;
    if (b->headers != NULL && b->headers != Py_None) {
        if (PyList_Append(b->headers, p->header ? p->header : empty_tuple) < 0)
            goto done;
    }
    else if (p->header != NULL) {
        /* ProducerBatch.set_headers: the column exists once a record has some */
        PyObject *column = PyList_New(index + 1);
        if (column == NULL)
            goto done;
        for (Py_ssize_t i = 0; i < index; i++)
            PyList_SET_ITEM(column, i, Py_NewRef(empty_tuple));
        PyList_SET_ITEM(column, index, Py_NewRef(p->header));
        Py_XSETREF(b->headers, column);
    }
    if (p->delivery != NULL) {
        PyObject *at = PyLong_FromSsize_t(index);
        PyObject *entry = at ? PyTuple_Pack(2, at, p->delivery) : NULL;
        Py_XDECREF(at);
        if (entry == NULL)
            goto done;
        int failed = PyList_Append(b->callbacks, entry);
        Py_DECREF(entry);
        if (failed)
            goto done;
    }
    self->buffered += p->size;
    b->size += p->size;
    self->unfinished += 1;
    FutureObject *future = (FutureObject *)p->future;
    future->batch = Py_NewRef(batch);
    future->index = index;
    if (b->size >= self->batch_size) {
        Py_CLEAR(self->open_batch); /* closing: _open changes anyway */
        if (call_method((PyObject *)self, str_close_batch, batch) < 0 ||
            call_method((PyObject *)self, str_wake, NULL) < 0)
            goto done;
    }
    else if (index == 0) {
        /* the sender must learn this batch's linger deadline */
        if (call_method((PyObject *)self, str_wake, NULL) < 0)
            goto done;
    }
    r = 1;
done:
    Py_DECREF(batch);
    return r;
}

/* A record the C path does not finish (prepare or append said r): the
 * Python path from the start, or once the partitioner was asked, from
 * _place with its answer (it is never asked twice); a refusal as the
 * failed future _failed makes; an error as it is. Clears p. */
static PyObject *
finish_elsewhere(AccumulatorObject *self, PyObject *const *args, Py_ssize_t nargs,
                 PyObject *kwnames, PyObject *const a[SEND_ARGS], Pending *p, int r)
{
    PyObject *result = NULL;
    PyObject *on_delivery = a[6] ? a[6] : Py_None;
    if (r == 2) {
        PyObject *stack[4] = {(PyObject *)self, a[0], p->refusal, on_delivery};
        result = PyObject_VectorcallMethod(str_failed, stack, 4, NULL);
    }
    else if (r == 0 && p->asked) {
        self->fallbacks++;
        PyObject *stack[8] = {(PyObject *)self, a[0], a[1] ? a[1] : Py_None,
                              a[2] ? a[2] : Py_None, p->chosen,
                              a[4] ? a[4] : Py_None, a[5] ? a[5] : Py_None, on_delivery};
        result = PyObject_VectorcallMethod(str_place, stack, 8, NULL);
    }
    else if (r == 0) {
        pending_clear(p);
        return fall_back(self, args, nargs, kwnames);
    }
    pending_clear(p);
    return result;
}

PyDoc_STRVAR(send_doc,
"send($self, /, topic, value=None, key=None, partition=None, timestamp=None,\n"
"     headers=None, on_delivery=None)\n--\n\n"
"Queue one record; its RecordFuture resolves to its RecordMetadata.\n\n"
"`on_delivery(error, metadata)` is called once it is acknowledged or\n"
"has failed, from the producer's own thread. (The C path of\n"
"Producer._python_send, which it hands unusual records to.)");

static PyObject *
accumulator_send(AccumulatorObject *self, PyObject *const *args, Py_ssize_t nargs,
                 PyObject *kwnames)
{
    PyObject *a[SEND_ARGS] = {NULL};
    if (!place_arguments(args, nargs, kwnames, a))
        return fall_back(self, args, nargs, kwnames);
    Pending p = {NULL};
    int r = prepare(self, a, &p);
    if (r != 1)
        return finish_elsewhere(self, args, nargs, kwnames, a, &p, r);
    RLockObject *lock = (RLockObject *)Py_NewRef(self->rlock);
    if (rlock_enter(lock) < 0) {
        Py_DECREF(lock);
        pending_clear(&p);
        return NULL;
    }
    r = append(self, a, &p);
    rlock_exit(lock);
    Py_DECREF(lock);
    if (r != 1)
        return finish_elsewhere(self, args, nargs, kwnames, a, &p, r);
    PyObject *future = Py_NewRef(p.future);
    pending_clear(&p);
    return future;
}

static PyMethodDef accumulator_methods[] = {
    {"send", (PyCFunction)(void (*)(void))accumulator_send, METH_FASTCALL | METH_KEYWORDS,
     send_doc},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef accumulator_members[] = {
    {"_open", T_OBJECT_EX, offsetof(AccumulatorObject, open), 0,
     "{(topic, partition): open batch}"},
    {"_partitions", T_OBJECT_EX, offsetof(AccumulatorObject, partitions), 0,
     "{topic: partition count}"},
    {"_buffered", T_PYSSIZET, offsetof(AccumulatorObject, buffered), 0,
     "bytes of records sent but not yet acknowledged or failed"},
    {"_unfinished", T_PYSSIZET, offsetof(AccumulatorObject, unfinished), 0,
     "records not yet acknowledged or failed"},
    {"batch_size", T_PYSSIZET, offsetof(AccumulatorObject, batch_size), 0,
     "bytes at which a batch is closed"},
    {"buffer_memory", T_PYSSIZET, offsetof(AccumulatorObject, buffer_memory), 0,
     "bytes that may wait for acknowledgement"},
    {"_closing", T_BOOL, offsetof(AccumulatorObject, closing), 0, "close() has begun"},
    {"_fallbacks", T_PYSSIZET, offsetof(AccumulatorObject, fallbacks), READONLY,
     "send() calls the C path handed to the Python path"},
    {NULL},
};

static PyGetSetDef accumulator_getset[] = {
    {"_lock", (getter)accumulator_get_lock, (setter)accumulator_set_lock,
     "the Condition both sides work under", NULL},
    {"partitioner", (getter)accumulator_get_partitioner, (setter)accumulator_set_partitioner,
     "picks the partition of a record without one", NULL},
    {NULL},
};

static PyTypeObject AccumulatorType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "appliance.client._accumulator.Accumulator",
    .tp_doc = "The record accumulator's state, kept where the C send() reaches it.",
    .tp_basicsize = sizeof(AccumulatorObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)accumulator_dealloc,
    .tp_traverse = (traverseproc)accumulator_traverse,
    .tp_clear = (inquiry)accumulator_clear,
    .tp_methods = accumulator_methods,
    .tp_members = accumulator_members,
    .tp_getset = accumulator_getset,
};

/* --- module -------------------------------------------------------------- */

PyDoc_STRVAR(configure_doc,
"configure($module, /, record_future, default_partitioner, on_delivery, refused)\n--\n\n"
"Name the Python classes send() makes and recognises: the RecordFuture\n"
"(a subclass of Future), the DefaultPartitioner whose rules it does in C,\n"
"on_delivery(callback), which makes a batch callback from send()'s\n"
"on_delivery, and the tuple of exception types a partitioner may raise to\n"
"refuse a record (its future fails). Until then every send() takes the\n"
"Python path.");

static PyObject *
configure(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"record_future", "default_partitioner", "on_delivery", "refused",
                             NULL};
    PyObject *future, *partitioner, *delivery, *refused;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O!OO!:configure", kwlist, &PyType_Type,
                                     &future, &PyType_Type, &partitioner, &delivery,
                                     &PyTuple_Type, &refused))
        return NULL;
    if (!PyType_IsSubtype((PyTypeObject *)future, &FutureType)) {
        PyErr_SetString(PyExc_TypeError, "record_future must be a subclass of Future");
        return NULL;
    }
    if (!PyCallable_Check(delivery)) {
        PyErr_SetString(PyExc_TypeError, "on_delivery must be callable");
        return NULL;
    }
    PyTypeObject *t = (PyTypeObject *)future;
    if (t->tp_basicsize != sizeof(FutureObject) || t->tp_itemsize || t->tp_dictoffset ||
        t->tp_weaklistoffset || t->tp_finalize || t->tp_del) {
        PyErr_SetString(PyExc_TypeError,
                        "record_future must add no slots, __dict__, __weakref__ or __del__");
        return NULL;
    }
    if (record_future_type != NULL && record_future_type != t) {
        PyErr_SetString(PyExc_RuntimeError, "configure() names one RecordFuture, once");
        return NULL;
    }
    t->tp_dealloc = (destructor)record_future_dealloc;
    Py_XSETREF(record_future_type, (PyTypeObject *)Py_NewRef(future));
    Py_XSETREF(default_partitioner, (PyTypeObject *)Py_NewRef(partitioner));
    Py_XSETREF(delivery_factory, Py_NewRef(delivery));
    Py_XSETREF(refused_errors, Py_NewRef(refused));
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"murmur2", (PyCFunction)murmur2, METH_O, murmur2_doc},
    {"configure", (PyCFunction)(void (*)(void))configure, METH_VARARGS | METH_KEYWORDS,
     configure_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef accumulator_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "appliance.client._accumulator",
    .m_doc = "The producer's per-record send() path in C (record_accumulator.py).",
    .m_size = -1,
    .m_methods = module_methods,
};

static int
intern(PyObject **slot, const char *text)
{
    *slot = PyUnicode_InternFromString(text);
    return *slot != NULL ? 0 : -1;
}

PyMODINIT_FUNC
PyInit__accumulator(void)
{
    static const char *names[SEND_ARGS] = {"topic",     "value",   "key",        "partition",
                                           "timestamp", "headers", "on_delivery"};
    for (int i = 0; i < SEND_ARGS; i++)
        if (intern(&send_names[i], names[i]) < 0)
            return NULL;
    if (intern(&str_python_send, "_python_send") < 0 ||
        intern(&str_open_batch, "_open_batch") < 0 ||
        intern(&str_close_batch, "_close_batch") < 0 || intern(&str_wake, "_wake") < 0 ||
        intern(&str_sticky, "_sticky") < 0 || intern(&str_lock, "_lock") < 0 ||
        intern(&str_place, "_place") < 0 || intern(&str_failed, "_failed") < 0)
        return NULL;
    if ((empty_tuple = PyTuple_New(0)) == NULL)
        return NULL;
    PyTypeObject *types[] = {&RLockType, &BatchType, &FutureType, &AccumulatorType};
    const char *type_names[] = {"RLock", "Batch", "Future", "Accumulator"};
    for (int i = 0; i < 4; i++)
        if (PyType_Ready(types[i]) < 0)
            return NULL;
    PyObject *module = PyModule_Create(&accumulator_module);
    if (module == NULL)
        return NULL;
    for (int i = 0; i < 4; i++) {
        if (PyModule_AddObjectRef(module, type_names[i], (PyObject *)types[i]) < 0) {
            Py_DECREF(module);
            return NULL;
        }
    }
    return module;
}
