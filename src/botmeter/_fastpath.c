/*
 * The hot path of every track call: check the arguments, stamp the time, append one record.
 *
 * A track call runs on the bot's own thread, so it must cost about as much as appending to a
 * deque. Python-level keyword parsing alone costs more than that, so the parsing, the checks and
 * the append live here. The behaviour is the same as botmeter.collect.recorder's pure-Python
 * version (used when this module is not built); the error messages are produced by the same
 * Python function so both say exactly the same thing.
 *
 * Buffer: one flat array of records per record kind ("lane"), a shared size and cap, per-lane
 *   drop counts; drained by the writer as columns.
 * TrackFn: a callable bound to one lane and one parameter spec (botmeter.events.RECORDS).
 *
 * It sits at the bottom of botmeter's layers, next to the event records it knows: the recorder
 * (collect), the pipeline and SMS segments (process) all use it without importing one another.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stddef.h>
#include <string.h>
#include <time.h>
#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define HAVE_TSC 1
#endif

#define MAX_PARAMS 32

/* Parameter checks; the numbers match botmeter.events. */
enum {
    CK_ANY = 0,
    CK_STR = 1,
    CK_OPT_STR = 2,
    CK_COUNT = 3,
    CK_OPT_AMOUNT = 4,
    CK_AMOUNT = 5,
    CK_CHOICE = 6,
    CK_OPT_DICT = 7,
    CK_TIMESTAMP = 8,
    CK_OBJECT = 9,
    CK_OPT_ID = 10,
    CK_OPT_CHOICE = 11,
};

/* Ways an argument can be wrong; passed to the Python error builder. */
enum {
    ERR_INVALID = 0,
    ERR_MISSING = 1,
    ERR_UNEXPECTED = 2,
    ERR_DUPLICATE = 3,
    ERR_POSITIONAL = 4,
    ERR_AT_MOST = 5,
    ERR_SURROGATE = 6, /* a str holding a lone surrogate: not storable as UTF-8 */
    FREE_FORM = 7,     /* check a non-empty properties/context dict in Python; raises only if bad */
};

/* The ts accepted without asking Python: epoch seconds from 2000-01-01 to a day ahead of now
   (botmeter.events.TS_EARLIEST and TS_AHEAD; coerce_ts refuses the rest with the same words). */
#define TS_EARLIEST 946684800.0
#define TS_AHEAD 86400.0

/* ------------------------------------------------------------------------------------------ */

/* One lane: records of one track call, stored flat (width pointers per record), so a track
   call allocates no tuple and adds nothing for the garbage collector to track. */
typedef struct {
    PyObject **items;
    Py_ssize_t count;    /* records */
    Py_ssize_t capacity; /* records */
    Py_ssize_t width;    /* values per record: ts + parameters */
    Py_ssize_t bytes;    /* about what its records hold in memory (see record_bytes) */
} Lane;

typedef struct {
    PyObject_HEAD
    Lane *lanes;
    Py_ssize_t n_lanes;
    Py_ssize_t size;
    Py_ssize_t cap;
    unsigned long long *dropped;
    int enabled;
    /* Wall clock from the CPU's time-stamp counter: ~10 ns instead of ~27 ns for clock_gettime.
       The writer recalibrates it every cycle (see buffer_calibrate); until the first calibration,
       and where there is no TSC, track calls use clock_gettime. */
    double ns_per_tick;        /* 0 until calibrated */
    unsigned long long base_tick;
    double base_wall;          /* seconds since the epoch at base_tick */
    unsigned long long anchor_tick;
    long long anchor_ns;       /* a long-baseline pair the rate is measured against */
    Py_ssize_t bytes;          /* about what all records hold in memory */
    Py_ssize_t max_bytes;      /* most bytes held before dropping */
} BufferObject;

static inline double
wall_now(void)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

static inline double
buffer_now(BufferObject *buf)
{
#ifdef HAVE_TSC
    if (buf->ns_per_tick > 0.0) {
        unsigned long long tick = __rdtsc();
        if (tick >= buf->base_tick) {
            return buf->base_wall + (double)(tick - buf->base_tick) * buf->ns_per_tick * 1e-9;
        }
    }
#endif
    return wall_now();
}

static void
lane_free(PyObject **items, Py_ssize_t n_values)
{
    for (Py_ssize_t k = 0; k < n_values; k++) {
        Py_XDECREF(items[k]);
    }
    PyMem_Free(items);
}

static void
buffer_dealloc(BufferObject *self)
{
    if (self->lanes) {
        for (Py_ssize_t i = 0; i < self->n_lanes; i++) {
            lane_free(self->lanes[i].items, self->lanes[i].count * self->lanes[i].width);
        }
        PyMem_Free(self->lanes);
    }
    PyMem_Free(self->dropped);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
buffer_init(BufferObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"widths", "cap", "max_bytes", NULL};
    PyObject *widths;
    Py_ssize_t cap;
    Py_ssize_t max_bytes = PY_SSIZE_T_MAX;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!n|n", kwlist, &PyTuple_Type, &widths, &cap, &max_bytes)) {
        return -1;
    }
    Py_ssize_t n_lanes = PyTuple_GET_SIZE(widths);
    if (n_lanes <= 0 || n_lanes > 64 || cap < 0 || self->lanes != NULL) {
        PyErr_SetString(PyExc_ValueError, "Buffer: 1..64 lane widths and cap >= 0, once");
        return -1;
    }
    self->lanes = PyMem_Calloc((size_t)n_lanes, sizeof(Lane));
    self->dropped = PyMem_Calloc((size_t)n_lanes, sizeof(unsigned long long));
    if (!self->lanes || !self->dropped) {
        PyErr_NoMemory();
        return -1;
    }
    self->n_lanes = n_lanes;
    for (Py_ssize_t i = 0; i < n_lanes; i++) {
        Py_ssize_t width = PyLong_AsSsize_t(PyTuple_GET_ITEM(widths, i));
        if (width < 1 || width > MAX_PARAMS + 1) {
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_ValueError, "Buffer: a lane width must be 1..33");
            }
            return -1;
        }
        self->lanes[i].width = width;
    }
    self->size = 0;
    self->cap = cap;
    self->bytes = 0;
    self->max_bytes = max_bytes < 0 ? 0 : max_bytes;
    self->enabled = 1;
    return 0;
}

/* Detaches a lane's records, leaving it empty: whatever runs while the caller builds Python
   objects from them (a finalizer that tracks an event) appends to a fresh array. */
static PyObject **
lane_take(Lane *lane, Py_ssize_t *count, Py_ssize_t *capacity)
{
    PyObject **items = lane->items;
    *count = lane->count;
    *capacity = lane->capacity;
    lane->items = NULL;
    lane->count = 0;
    lane->capacity = 0;
    return items;
}

/* Gives an emptied array back to its lane, so a steady stream of track calls never reallocates;
   a very large one (after a burst) is freed instead. */
#define RECYCLE_MAX_RECORDS 65536

static void
lane_recycle(Lane *lane, PyObject **items, Py_ssize_t capacity)
{
    if (lane->items == NULL && capacity <= RECYCLE_MAX_RECORDS) {
        lane->items = items;
        lane->capacity = capacity;
    }
    else {
        PyMem_Free(items);
    }
}

/* Re-anchors the TSC clock to the wall clock; called by the writer about once a second. The
   rate comes from a baseline of at least 0.2 s; a wall-clock step (NTP, suspend) restarts it. */
static PyObject *
buffer_calibrate(BufferObject *self, PyObject *Py_UNUSED(ignored))
{
#ifdef HAVE_TSC
    /* Read the wall clock between two counter reads and keep the tightest of a few tries, so a
       preemption between the reads cannot skew the anchor. */
    struct timespec now = {0, 0};
    unsigned long long tick = 0, best = ~0ULL;
    for (int attempt = 0; attempt < 5; attempt++) {
        struct timespec t;
        unsigned long long before = __rdtsc();
        clock_gettime(CLOCK_REALTIME, &t);
        unsigned long long after = __rdtsc();
        if (after >= before && after - before < best) {
            best = after - before;
            now = t;
            tick = before + (after - before) / 2;
        }
    }
    if (best == ~0ULL) {
        Py_RETURN_FALSE;
    }
    long long ns = (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
    double wall = (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
    if (self->anchor_ns == 0 || tick <= self->anchor_tick) {
        self->anchor_tick = tick;
        self->anchor_ns = ns;
        self->ns_per_tick = 0.0;
        Py_RETURN_FALSE;
    }
    if (self->ns_per_tick > 0.0) {
        double predicted = self->base_wall + (double)(tick - self->base_tick) * self->ns_per_tick * 1e-9;
        if (predicted - wall > 1e-3 || wall - predicted > 1e-3) {
            self->anchor_tick = tick;
            self->anchor_ns = ns;
            self->ns_per_tick = 0.0;
            Py_RETURN_FALSE;
        }
    }
    long long span = ns - self->anchor_ns;
    if (span >= 200000000LL) {
        self->ns_per_tick = (double)span / (double)(tick - self->anchor_tick);
    }
    self->base_tick = tick;
    self->base_wall = wall;
    return PyBool_FromLong(self->ns_per_tick > 0.0);
#else
    Py_RETURN_FALSE;
#endif
}

static PyObject *
buffer_now_py(BufferObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyFloat_FromDouble(buffer_now(self));
}

/* Every buffered record, per lane as a tuple of columns (None when the lane is empty): the
   writer works a column at a time, and building columns here costs a few nanoseconds a value. */
static PyObject *
buffer_drain_columns(BufferObject *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *out = PyTuple_New(self->n_lanes);
    if (!out) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < self->n_lanes; i++) {
        Py_ssize_t count, capacity, width = self->lanes[i].width;
        self->bytes -= self->lanes[i].bytes;
        self->lanes[i].bytes = 0;
        PyObject **items = lane_take(&self->lanes[i], &count, &capacity);
        self->size -= count;
        if (count == 0) {
            lane_recycle(&self->lanes[i], items, capacity);
            PyTuple_SET_ITEM(out, i, Py_NewRef(Py_None));
            continue;
        }
        PyObject *columns = PyTuple_New(width);
        int failed = columns == NULL;
        for (Py_ssize_t f = 0; f < width && !failed; f++) {
            PyObject *col = PyList_New(count);
            if (!col) {
                failed = 1;
                break;
            }
            PyTuple_SET_ITEM(columns, f, col);
        }
        if (failed) {
            lane_free(items, count * width);
            Py_XDECREF(columns);
            Py_DECREF(out);
            return NULL;
        }
        for (Py_ssize_t r = 0; r < count; r++) {
            PyObject **rec = items + r * width;
            for (Py_ssize_t f = 0; f < width; f++) {
                PyList_SET_ITEM(PyTuple_GET_ITEM(columns, f), r, rec[f]); /* steals */
            }
        }
        lane_recycle(&self->lanes[i], items, capacity);
        PyTuple_SET_ITEM(out, i, columns);
    }
    return out;
}

static PyObject *
buffer_dropped_counts(BufferObject *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *out = PyTuple_New(self->n_lanes);
    if (!out) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < self->n_lanes; i++) {
        PyObject *n = PyLong_FromUnsignedLongLong(self->dropped[i]);
        if (!n) {
            Py_DECREF(out);
            return NULL;
        }
        PyTuple_SET_ITEM(out, i, n);
    }
    return out;
}

/* size, cap, bytes and max_bytes: Py_ssize_t fields of the buffer, read (and the two limits
   set) through one getter and one setter told which field by the closure. */
typedef struct {
    const char *name;
    size_t offset;
} SsizeField;

static const SsizeField FIELD_SIZE = {"size", offsetof(BufferObject, size)};
static const SsizeField FIELD_CAP = {"cap", offsetof(BufferObject, cap)};
static const SsizeField FIELD_BYTES = {"bytes", offsetof(BufferObject, bytes)};
static const SsizeField FIELD_MAX_BYTES = {"max_bytes", offsetof(BufferObject, max_bytes)};

static PyObject *
buffer_get_ssize(BufferObject *self, void *closure)
{
    const SsizeField *field = closure;
    return PyLong_FromSsize_t(*(Py_ssize_t *)((char *)self + field->offset));
}

static int
buffer_set_limit(BufferObject *self, PyObject *value, void *closure)
{
    const SsizeField *field = closure;
    if (value == NULL) {
        PyErr_Format(PyExc_AttributeError, "%s cannot be deleted", field->name);
        return -1;
    }
    Py_ssize_t limit = PyLong_AsSsize_t(value);
    if (limit == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (limit < 0) {
        PyErr_Format(PyExc_ValueError, "%s must be >= 0", field->name);
        return -1;
    }
    *(Py_ssize_t *)((char *)self + field->offset) = limit;
    return 0;
}

static PyObject *
buffer_get_enabled(BufferObject *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->enabled);
}

static int
buffer_set_enabled(BufferObject *self, PyObject *value, void *Py_UNUSED(closure))
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "enabled cannot be deleted");
        return -1;
    }
    int on = PyObject_IsTrue(value);
    if (on < 0) {
        return -1;
    }
    self->enabled = on;
    return 0;
}

static PyMethodDef buffer_methods[] = {
    {"calibrate", (PyCFunction)buffer_calibrate, METH_NOARGS,
     "Re-anchor the fast clock to the wall clock; True once it is in use."},
    {"now", (PyCFunction)buffer_now_py, METH_NOARGS, "The time a track call would stamp now."},
    {"drain_columns", (PyCFunction)buffer_drain_columns, METH_NOARGS,
     "Take every buffered record, per lane as a tuple of columns (None when empty)."},
    {"dropped_counts", (PyCFunction)buffer_dropped_counts, METH_NOARGS,
     "Records dropped so far because the buffer was full, per lane."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef buffer_getset[] = {
    {"size", (getter)buffer_get_ssize, NULL, "records waiting", (void *)&FIELD_SIZE},
    {"cap", (getter)buffer_get_ssize, (setter)buffer_set_limit, "most records held before dropping",
     (void *)&FIELD_CAP},
    {"bytes", (getter)buffer_get_ssize, NULL, "about what the records waiting hold in memory",
     (void *)&FIELD_BYTES},
    {"max_bytes", (getter)buffer_get_ssize, (setter)buffer_set_limit, "most bytes held before dropping",
     (void *)&FIELD_MAX_BYTES},
    {"enabled", (getter)buffer_get_enabled, (setter)buffer_set_enabled, "track calls do nothing when false",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject BufferType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "botmeter._fastpath.Buffer",
    .tp_basicsize = sizeof(BufferObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Bounded in-memory buffer of track-call records, one lane per record kind.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)buffer_init,
    .tp_dealloc = (destructor)buffer_dealloc,
    .tp_methods = buffer_methods,
    .tp_getset = buffer_getset,
};

/* ------------------------------------------------------------------------------------------ */

#define KW_CACHE 4
#define TS_SLOT (-1)

/* How one call site's keyword names map to parameters (TS_SLOT for ts). */
typedef struct {
    PyObject *kwnames;
    Py_ssize_t nargs;
    signed char slots[MAX_PARAMS + 1];
} KwMap;

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    BufferObject *buf;
    PyObject *unset;     /* marks a parameter not passed (distinct from None) */
    KwMap kwcache[KW_CACHE];
    int kwcache_next;
    Py_ssize_t lane;
    Py_ssize_t nparams;
    Py_ssize_t positional;
    PyObject *call;      /* str: the track call's name, for messages */
    PyObject *names;     /* tuple of interned str */
    PyObject *defaults;  /* tuple; `required` marks a parameter without default */
    PyObject *choices;   /* tuple of tuples of str (empty when not a choice) */
    PyObject *required;  /* the sentinel */
    PyObject *coerce_ts; /* callable(value, call) -> float, for datetimes */
    PyObject *invalid;   /* callable(call, kind, name, check, value, choices) -> raises */
    PyObject *ts_name;   /* interned "ts" */
    int checks[MAX_PARAMS];
    Py_ssize_t n_at_most;
    int at_most_a[MAX_PARAMS];
    int at_most_b[MAX_PARAMS];
    PyObject *context;   /* ContextVar of (user, conversation, stage), or NULL; see apply_context */
    int ctx_slots[3];    /* parameter index of each context field, -1 when the call has none */
    PyObject *ctx_held;  /* the last context tuple read, kept so the values taken from it stay alive */
} TrackFnObject;

static int
trackfn_traverse(TrackFnObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->buf);
    Py_VISIT(self->coerce_ts);
    Py_VISIT(self->invalid);
    Py_VISIT(self->context);
    Py_VISIT(self->ctx_held);
    return 0;
}

static int
trackfn_clear(TrackFnObject *self)
{
    Py_CLEAR(self->buf);
    Py_CLEAR(self->call);
    Py_CLEAR(self->names);
    Py_CLEAR(self->defaults);
    Py_CLEAR(self->choices);
    Py_CLEAR(self->required);
    Py_CLEAR(self->coerce_ts);
    Py_CLEAR(self->invalid);
    Py_CLEAR(self->ts_name);
    Py_CLEAR(self->unset);
    Py_CLEAR(self->context);
    Py_CLEAR(self->ctx_held);
    for (int c = 0; c < KW_CACHE; c++) {
        Py_CLEAR(self->kwcache[c].kwnames);
    }
    return 0;
}

static void
trackfn_dealloc(TrackFnObject *self)
{
    PyObject_GC_UnTrack(self);
    trackfn_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Raises through the shared Python error builder and returns NULL. */
static PyObject *
raise_invalid(TrackFnObject *self, int kind, PyObject *name, int check, PyObject *value, PyObject *choices)
{
    PyObject *res = PyObject_CallFunction(self->invalid, "OiOiOO", self->call, kind, name ? name : Py_None,
                                          check, value ? value : Py_None, choices ? choices : Py_None);
    Py_XDECREF(res);
    if (!PyErr_Occurred()) {
        PyErr_SetString(PyExc_TypeError, "invalid track call");
    }
    return NULL;
}

static inline int
is_int(PyObject *v)
{
    return PyLong_CheckExact(v) || (PyLong_Check(v) && !PyBool_Check(v));
}

/* 1 when an int fits a signed 64-bit column (tokens, integer ids). */
static inline int
fits_int64(PyObject *v)
{
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (x == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return !overflow;
}

/* 1 when an int amount can be stored as a double: 10**400 cannot. */
static inline int
fits_double(PyObject *v)
{
    if (fits_int64(v)) {
        return 1;
    }
    double d = PyLong_AsDouble(v);
    if (d == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return 1;
}

/* 1 when a str holds a lone surrogate; only 2- and 4-byte strings can, so ASCII costs nothing. */
static int
has_surrogate(PyObject *s)
{
    int kind = PyUnicode_KIND(s);
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    if (kind == PyUnicode_2BYTE_KIND) {
        const Py_UCS2 *d = PyUnicode_2BYTE_DATA(s);
        for (Py_ssize_t i = 0; i < n; i++) {
            if ((d[i] & 0xF800) == 0xD800) {
                return 1;
            }
        }
    }
    else if (kind == PyUnicode_4BYTE_KIND) {
        const Py_UCS4 *d = PyUnicode_4BYTE_DATA(s);
        for (Py_ssize_t i = 0; i < n; i++) {
            if ((d[i] & 0xFFFFF800) == 0xD800) {
                return 1;
            }
        }
    }
    return 0;
}

/* 1 when v is a finite number >= 0 (int or float, not bool), else 0. */
static inline int
is_amount(PyObject *v)
{
    if (PyFloat_Check(v)) {
        double d = PyFloat_AS_DOUBLE(v);
        return isfinite(d) && d >= 0.0;
    }
    if (is_int(v)) {
        return _PyLong_Sign(v) >= 0 && fits_double(v);
    }
    return 0;
}

static int
in_choices(PyObject *v, PyObject *options)
{
    if (!PyUnicode_Check(v)) {
        return 0;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(options);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (PyTuple_GET_ITEM(options, i) == v) {
            return 1;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        int eq = PyUnicode_Compare(PyTuple_GET_ITEM(options, i), v);
        if (eq == 0) {
            return 1;
        }
        if (eq == -1 && PyErr_Occurred()) {
            PyErr_Clear();
        }
    }
    return 0;
}

static int
check_value(int check, PyObject *v, PyObject *options)
{
    switch (check) {
    case CK_ANY:
        return 1;
    case CK_STR:
        return PyUnicode_Check(v) && PyUnicode_GET_LENGTH(v) > 0;
    case CK_OPT_STR:
        return v == Py_None || PyUnicode_Check(v);
    case CK_COUNT:
        return is_int(v) && _PyLong_Sign(v) >= 0 && fits_int64(v);
    case CK_OPT_AMOUNT:
        return v == Py_None || is_amount(v);
    case CK_AMOUNT:
        return is_amount(v);
    case CK_CHOICE:
        return in_choices(v, options);
    case CK_OPT_CHOICE:
        return v == Py_None || in_choices(v, options);
    case CK_OPT_DICT:
        return v == Py_None || PyDict_Check(v);
    case CK_OBJECT:
        return v != Py_None;
    case CK_OPT_ID:
        return v == Py_None || PyUnicode_Check(v) || (is_int(v) && fits_int64(v));
    default:
        return 0;
    }
}

/* 1 when a properties/context dict is flat and plainly storable: text keys, and values that are
   text, finite floats, 64-bit ints, booleans, None, or objects stored as their str() (which the
   Python walk accepts as they are). Anything else (nesting, NaN, a subclass of str, int or float,
   a lone surrogate) is left to the Python walk, which names the fault. */
static int
plain_free_form(PyObject *d)
{
    Py_ssize_t pos = 0;
    PyObject *key, *v;
    while (PyDict_Next(d, &pos, &key, &v)) {
        if (!PyUnicode_CheckExact(key) || has_surrogate(key)) {
            return 0;
        }
        if (PyUnicode_CheckExact(v)) {
            if (has_surrogate(v)) {
                return 0;
            }
        }
        else if (PyFloat_CheckExact(v)) {
            if (!isfinite(PyFloat_AS_DOUBLE(v))) {
                return 0;
            }
        }
        else if (PyLong_CheckExact(v)) {
            if (!fits_int64(v)) {
                return 0;
            }
        }
        else if (v == Py_None || PyBool_Check(v)) {
        }
        else if (PyUnicode_Check(v) || PyFloat_Check(v) || PyLong_Check(v) || PyDict_Check(v) ||
                 PyList_Check(v) || PyTuple_Check(v)) {
            return 0;
        }
    }
    return 1;
}

/* Validates one argument the caller actually passed (defaults are valid by construction), fully
   and in the pure-Python recorder's order: type and range, then its text, then a dict's contents. */
static inline PyObject *
check_given(TrackFnObject *self, PyObject **names, Py_ssize_t j, PyObject *v)
{
    PyObject *options = PyTuple_GET_ITEM(self->choices, j);
    if (!check_value(self->checks[j], v, options)) {
        return raise_invalid(self, ERR_INVALID, names[j], self->checks[j], v, options);
    }
    if (PyUnicode_Check(v) && has_surrogate(v)) {
        return raise_invalid(self, ERR_SURROGATE, names[j], self->checks[j], v, options);
    }
    if (self->checks[j] == CK_OPT_DICT && v != Py_None && PyDict_GET_SIZE(v) > 0 && !plain_free_form(v)) {
        /* Nesting, cycles, NaN, huge ints inside: walked in Python, only when a dict is given
           that is not plainly storable. */
        PyObject *res = PyObject_CallFunction(self->invalid, "OiOiOO", self->call, FREE_FORM, names[j],
                                              self->checks[j], v, options);
        if (res == NULL) {
            return NULL;
        }
        Py_DECREF(res);
    }
    return Py_None;
}

/* Matches keyword names to parameters the slow way; on success remembers the mapping for this
   call site's kwnames tuple (a constant of the calling code, so the same object every call). */
static KwMap *
parse_keywords(TrackFnObject *self, PyObject **names, PyObject *const *args, Py_ssize_t nargs,
               PyObject *kwnames, PyObject **values, PyObject **ts)
{
    Py_ssize_t n = self->nparams;
    Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
    signed char slots[MAX_PARAMS + 1];
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, k);
        PyObject *val = args[nargs + k];
        Py_ssize_t found = -1;
        for (Py_ssize_t j = 0; j < n; j++) {
            if (names[j] == key) {
                found = j;
                break;
            }
        }
        if (found < 0) {
            for (Py_ssize_t j = 0; j < n; j++) {
                if (PyUnicode_Compare(names[j], key) == 0) {
                    found = j;
                    break;
                }
            }
            if (PyErr_Occurred()) {
                PyErr_Clear();
            }
        }
        if (found < 0) {
            if (key == self->ts_name || PyUnicode_Compare(self->ts_name, key) == 0) {
                if (*ts != NULL) {
                    raise_invalid(self, ERR_DUPLICATE, self->ts_name, 0, val, NULL);
                    return NULL;
                }
                *ts = val;
                slots[k] = TS_SLOT;
                continue;
            }
            PyErr_Clear();
            raise_invalid(self, ERR_UNEXPECTED, key, 0, val, NULL);
            return NULL;
        }
        if (values[found] != self->unset) {
            raise_invalid(self, ERR_DUPLICATE, names[found], 0, val, NULL);
            return NULL;
        }
        values[found] = val;
        slots[k] = (signed char)found;
    }
    /* Every name matched a distinct parameter (or ts), so nkw <= MAX_PARAMS + 1 and it fits. */
    KwMap *entry = &self->kwcache[self->kwcache_next];
    self->kwcache_next = (self->kwcache_next + 1) % KW_CACHE;
    Py_XDECREF(entry->kwnames);
    Py_INCREF(kwnames);
    entry->kwnames = kwnames;
    entry->nargs = nargs;
    memcpy(entry->slots, slots, (size_t)nkw);
    return entry;
}

/* Memory accounting (botmeter.collect.recorder.record_bytes says the same in Python): a record
   costs its slots plus a flat allowance for small values (usually shared: "openai", 812), plus
   the length of every string over 64 characters and what a free-form dict holds. A dict over
   FREE_FORM_MAX is not kept: its slot holds its size (an int) and the writer stores a marker. */
#define RECORD_ALLOWANCE 128
#define LONG_STR 64
#define FREE_FORM_MAX (32 * 1024)
#define FREE_FORM_DEPTH 100

static Py_ssize_t
free_form_bytes(PyObject *v, int depth, Py_ssize_t *nodes)
{
    /* Stops once past the limit, so a huge (or self-referring) value costs a bounded walk. */
    if (--*nodes < 0 || depth > FREE_FORM_DEPTH) {
        return FREE_FORM_MAX + 1;
    }
    if (PyUnicode_Check(v)) {
        return 48 + PyUnicode_GET_LENGTH(v);
    }
    if (PyBytes_Check(v)) {
        return 32 + PyBytes_GET_SIZE(v);
    }
    Py_ssize_t total = 64;
    if (PyDict_Check(v)) {
        Py_ssize_t pos = 0;
        PyObject *key, *item;
        while (total <= FREE_FORM_MAX && PyDict_Next(v, &pos, &key, &item)) {
            total += 16 + free_form_bytes(key, depth + 1, nodes) + free_form_bytes(item, depth + 1, nodes);
        }
        return total;
    }
    if (PyList_Check(v) || PyTuple_Check(v)) {
        Py_ssize_t n = PySequence_Fast_GET_SIZE(v);
        for (Py_ssize_t i = 0; i < n && total <= FREE_FORM_MAX; i++) {
            total += 8 + free_form_bytes(PySequence_Fast_GET_ITEM(v, i), depth + 1, nodes);
        }
        return total;
    }
    return 32;
}

/* Adds up a record just appended; replaces an oversized dict by its size. */
static Py_ssize_t
record_bytes(PyObject **rec, Py_ssize_t width)
{
    Py_ssize_t total = width * (Py_ssize_t)sizeof(PyObject *) + RECORD_ALLOWANCE;
    for (Py_ssize_t f = 1; f < width; f++) {
        PyObject *v = rec[f];
        if (PyUnicode_CheckExact(v)) {
            Py_ssize_t len = PyUnicode_GET_LENGTH(v);
            total += len > LONG_STR ? len : 0;
        }
        else if (PyDict_Check(v)) {
            Py_ssize_t nodes = 4096;
            Py_ssize_t size = free_form_bytes(v, 0, &nodes);
            if (size > FREE_FORM_MAX) {
                PyObject *marker = PyLong_FromSsize_t(size);
                if (marker == NULL) {
                    PyErr_Clear();
                    marker = Py_NewRef(Py_None);
                }
                Py_SETREF(rec[f], marker);
                size = 32;
            }
            total += size;
        }
    }
    return total;
}

/* Fills user, conversation and stage left None from `with meter.context(...)`. The context
   variable is read only when one of them is None; its value was checked when it was set. */
static int
apply_context(TrackFnObject *self, PyObject **values)
{
    int wanted = 0;
    for (int k = 0; k < 3; k++) {
        wanted |= self->ctx_slots[k] >= 0 && values[self->ctx_slots[k]] == Py_None;
    }
    if (!wanted) {
        return 0;
    }
    PyObject *ctx = NULL;
    if (PyContextVar_Get(self->context, NULL, &ctx) < 0) {
        return -1;
    }
    if (ctx == NULL) {
        return 0;
    }
    if (PyTuple_Check(ctx) && PyTuple_GET_SIZE(ctx) == 3) {
        for (int k = 0; k < 3; k++) {
            int j = self->ctx_slots[k];
            if (j >= 0 && values[j] == Py_None) {
                values[j] = PyTuple_GET_ITEM(ctx, k); /* borrowed from ctx, held below */
            }
        }
    }
    /* Held until the next call rather than released now: a finalizer running later in this call
       could reset the context variable and free the tuple. */
    Py_XSETREF(self->ctx_held, ctx);
    return 0;
}

static PyObject *
trackfn_vectorcall(TrackFnObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (!self->buf->enabled) {
        Py_RETURN_NONE;
    }
    PyObject *values[MAX_PARAMS];
    PyObject *ts = NULL;
    Py_ssize_t n = self->nparams;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject **names = &PyTuple_GET_ITEM(self->names, 0);

    if (nargs > self->positional) {
        PyObject *given = PyLong_FromSsize_t(nargs);
        if (given == NULL) {
            return NULL;
        }
        raise_invalid(self, ERR_POSITIONAL, NULL, (int)self->positional, given, NULL);
        Py_DECREF(given);
        return NULL;
    }
    /* Start from "not given" everywhere; positional arguments fill the first slots. */
    for (Py_ssize_t j = 0; j < n; j++) {
        values[j] = self->unset;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        values[i] = args[i];
    }
    if (kwnames != NULL) {
        Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
        KwMap *hit = NULL;
        for (int c = 0; c < KW_CACHE; c++) {
            if (self->kwcache[c].kwnames == kwnames && self->kwcache[c].nargs == nargs) {
                hit = &self->kwcache[c];
                break;
            }
        }
        if (hit != NULL) {
            for (Py_ssize_t k = 0; k < nkw; k++) {
                int j = hit->slots[k];
                if (j == TS_SLOT) {
                    ts = args[nargs + k];
                }
                else {
                    values[j] = args[nargs + k];
                }
            }
        }
        else {
            hit = parse_keywords(self, names, args, nargs, kwnames, values, &ts);
            if (hit == NULL) {
                return NULL;
            }
        }
    }
    /* Checked in parameter order, as the pure-Python recorder does: a call with several faults
       names the same one on both paths. */
    for (Py_ssize_t j = 0; j < n; j++) {
        if (values[j] == self->unset) {
            PyObject *d = PyTuple_GET_ITEM(self->defaults, j);
            if (d == self->required) {
                return raise_invalid(self, ERR_MISSING, names[j], self->checks[j], NULL, NULL);
            }
            values[j] = d;
        }
        else if (check_given(self, names, j, values[j]) == NULL) {
            return NULL;
        }
    }
    if (self->context != NULL && apply_context(self, values) < 0) {
        return NULL;
    }
    for (Py_ssize_t p = 0; p < self->n_at_most; p++) {
        int a = self->at_most_a[p], b = self->at_most_b[p];
        if (values[a] == values[b] || _PyLong_Sign(values[a]) == 0) {
            continue; /* equal, or zero (the usual reasoning_tokens=0): nothing to compare */
        }
        int overflow_a = 0, overflow_b = 0;
        long long va = PyLong_AsLongLongAndOverflow(values[a], &overflow_a);
        long long vb = PyLong_AsLongLongAndOverflow(values[b], &overflow_b);
        int greater = (overflow_a || overflow_b) ? PyObject_RichCompareBool(values[a], values[b], Py_GT) == 1
                                                 : va > vb;
        if (greater) {
            PyObject *pair = PyTuple_Pack(2, values[a], values[b]);
            PyObject *res = raise_invalid(self, ERR_AT_MOST, names[a], b, pair, names[b]);
            Py_XDECREF(pair);
            return res;
        }
    }

    PyObject *stamp;
    if (ts == NULL || ts == Py_None) {
        stamp = PyFloat_FromDouble(buffer_now(self->buf));
    }
    else if (PyFloat_CheckExact(ts) && PyFloat_AS_DOUBLE(ts) >= TS_EARLIEST &&
             PyFloat_AS_DOUBLE(ts) <= buffer_now(self->buf) + TS_AHEAD) {
        Py_INCREF(ts);
        stamp = ts;
    }
    else {
        /* datetimes, ints and anything odd: the Python side converts or raises with the same words. */
        stamp = PyObject_CallFunctionObjArgs(self->coerce_ts, ts, self->call, NULL);
    }
    if (stamp == NULL) {
        return NULL;
    }

    BufferObject *buf = self->buf;
    if (buf->size >= buf->cap) {
        /* Full: the writer cannot keep up or the store is down. Count it; never block the bot. */
        buf->dropped[self->lane]++;
        Py_DECREF(stamp);
        Py_RETURN_NONE;
    }
    Lane *lane = &buf->lanes[self->lane];
    if (lane->count == lane->capacity) {
        Py_ssize_t capacity = lane->capacity ? lane->capacity * 2 : 256;
        PyObject **grown = PyMem_Realloc(lane->items, (size_t)(capacity * lane->width) * sizeof(PyObject *));
        if (grown == NULL) {
            Py_DECREF(stamp);
            return PyErr_NoMemory();
        }
        lane->items = grown;
        lane->capacity = capacity;
    }
    PyObject **rec = lane->items + lane->count * lane->width;
    rec[0] = stamp;
    for (Py_ssize_t j = 0; j < n; j++) {
        Py_INCREF(values[j]);
        rec[j + 1] = values[j];
    }
    Py_ssize_t bytes = record_bytes(rec, lane->width);
    if (buf->bytes + bytes > buf->max_bytes) {
        /* Full in bytes: undo the append, count the drop. */
        buf->dropped[self->lane]++;
        for (Py_ssize_t f = 0; f < lane->width; f++) {
            Py_DECREF(rec[f]);
        }
        Py_RETURN_NONE;
    }
    lane->bytes += bytes;
    buf->bytes += bytes;
    lane->count++;
    buf->size++;
    Py_RETURN_NONE;
}

static PyObject *
trackfn_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"buffer", "lane", "call", "names", "checks", "defaults", "choices", "positional",
                             "at_most", "required", "coerce_ts", "invalid", NULL};
    PyObject *buffer, *call, *names, *checks, *defaults, *choices, *at_most, *required, *coerce_ts, *invalid;
    Py_ssize_t lane, positional;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!nUO!O!O!O!nO!OOO", kwlist, &BufferType, &buffer, &lane, &call,
                                     &PyTuple_Type, &names, &PyTuple_Type, &checks, &PyTuple_Type, &defaults,
                                     &PyTuple_Type, &choices, &positional, &PyTuple_Type, &at_most, &required,
                                     &coerce_ts, &invalid)) {
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(names);
    if (n > MAX_PARAMS || PyTuple_GET_SIZE(checks) != n || PyTuple_GET_SIZE(defaults) != n ||
        PyTuple_GET_SIZE(choices) != n || PyTuple_GET_SIZE(at_most) > MAX_PARAMS) {
        PyErr_SetString(PyExc_ValueError, "TrackFn: names, checks, defaults and choices must match in length");
        return NULL;
    }
    if (lane < 0 || lane >= ((BufferObject *)buffer)->n_lanes ||
        ((BufferObject *)buffer)->lanes[lane].width != n + 1) {
        PyErr_SetString(PyExc_ValueError, "TrackFn: lane out of range, or its width is not 1 + parameters");
        return NULL;
    }
    TrackFnObject *self = (TrackFnObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->vectorcall = (vectorcallfunc)trackfn_vectorcall;
    Py_INCREF(buffer);
    self->buf = (BufferObject *)buffer;
    self->lane = lane;
    self->nparams = n;
    self->positional = positional;
    PyObject *interned = PyTuple_New(n);
    if (!interned) {
        Py_DECREF(self);
        return NULL;
    }
    for (Py_ssize_t j = 0; j < n; j++) {
        PyObject *name = PyTuple_GET_ITEM(names, j);
        if (!PyUnicode_Check(name)) {
            Py_DECREF(interned);
            Py_DECREF(self);
            PyErr_SetString(PyExc_TypeError, "TrackFn: names must be str");
            return NULL;
        }
        Py_INCREF(name);
        PyUnicode_InternInPlace(&name);
        PyTuple_SET_ITEM(interned, j, name);
        long c = PyLong_AsLong(PyTuple_GET_ITEM(checks, j));
        if (c == -1 && PyErr_Occurred()) {
            Py_DECREF(interned);
            Py_DECREF(self);
            return NULL;
        }
        self->checks[j] = (int)c;
    }
    self->names = interned;
    self->n_at_most = PyTuple_GET_SIZE(at_most);
    for (Py_ssize_t p = 0; p < self->n_at_most; p++) {
        PyObject *pair = PyTuple_GET_ITEM(at_most, p);
        int a, b;
        if (!PyArg_ParseTuple(pair, "ii", &a, &b) || a < 0 || b < 0 || a >= n || b >= n) {
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_ValueError, "TrackFn: at_most index out of range");
            }
            Py_DECREF(self);
            return NULL;
        }
        self->at_most_a[p] = a;
        self->at_most_b[p] = b;
    }
    Py_INCREF(call);
    self->call = call;
    Py_INCREF(defaults);
    self->defaults = defaults;
    Py_INCREF(choices);
    self->choices = choices;
    Py_INCREF(required);
    self->required = required;
    Py_INCREF(coerce_ts);
    self->coerce_ts = coerce_ts;
    Py_INCREF(invalid);
    self->invalid = invalid;
    self->unset = PyObject_CallNoArgs((PyObject *)&PyBaseObject_Type);
    self->ts_name = PyUnicode_InternFromString("ts");
    if (!self->ts_name || !self->unset) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

/* use_context(var, (user_slot, conversation_slot, stage_slot)): fields the call leaves None come
   from the ContextVar `var`, whose value is None or a (user, conversation, stage) tuple. */
static PyObject *
trackfn_use_context(TrackFnObject *self, PyObject *args)
{
    PyObject *var;
    int slots[3];
    if (!PyArg_ParseTuple(args, "O(iii)", &var, &slots[0], &slots[1], &slots[2])) {
        return NULL;
    }
    if (!PyContextVar_CheckExact(var)) {
        PyErr_SetString(PyExc_TypeError, "use_context: a contextvars.ContextVar");
        return NULL;
    }
    for (int k = 0; k < 3; k++) {
        if (slots[k] < -1 || slots[k] >= self->nparams) {
            PyErr_SetString(PyExc_ValueError, "use_context: slot out of range");
            return NULL;
        }
        self->ctx_slots[k] = slots[k];
    }
    Py_INCREF(var);
    Py_XSETREF(self->context, var);
    Py_RETURN_NONE;
}

static PyMethodDef trackfn_methods[] = {
    {"use_context", (PyCFunction)trackfn_use_context, METH_VARARGS,
     "use_context(var, slots): fill user, conversation and stage left None from a ContextVar."},
    {NULL, NULL, 0, NULL},
};

static PyObject *
trackfn_repr(TrackFnObject *self)
{
    return PyUnicode_FromFormat("<botmeter %U>", self->call);
}

static PyTypeObject TrackFnType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "botmeter._fastpath.TrackFn",
    .tp_basicsize = sizeof(TrackFnObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "A track call: checks its arguments and appends one record to its buffer lane.",
    .tp_new = trackfn_new,
    .tp_dealloc = (destructor)trackfn_dealloc,
    .tp_traverse = (traverseproc)trackfn_traverse,
    .tp_clear = (inquiry)trackfn_clear,
    .tp_vectorcall_offset = offsetof(TrackFnObject, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_repr = (reprfunc)trackfn_repr,
    .tp_methods = trackfn_methods,
};

/* ------------------------------------------------------------------------------------------ */
/* Column buffers for Arrow. The writer turns each column (a list of Python values) into an Arrow
   array; pyarrow's generic converter inspects every object and costs 20-40 ns a value, which at
   hundreds of thousands of events a second is most of the writer's time. These build the raw
   Arrow buffers (validity bitmap, values or offsets + UTF-8 data) directly. On any value of an
   unexpected type they return None and the caller uses pyarrow's converter, which raises properly. */

enum { COL_FLOAT64 = 0, COL_INT64 = 1, COL_UTF8 = 2 };

static PyObject *
column_buffers(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *values;
    int kind;
    if (!PyArg_ParseTuple(args, "Oi", &values, &kind)) {
        return NULL;
    }
    PyObject *seq = PySequence_Fast(values, "column_buffers: a list or tuple");
    if (seq == NULL) {
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    PyObject *validity = NULL, *data = NULL, *offsets = NULL, *result = NULL;
    Py_ssize_t nulls = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        nulls += items[i] == Py_None;
    }
    if (nulls) {
        validity = PyBytes_FromStringAndSize(NULL, (n + 7) / 8);
        if (validity == NULL) {
            goto done;
        }
        unsigned char *bits = (unsigned char *)PyBytes_AS_STRING(validity);
        memset(bits, 0, (size_t)((n + 7) / 8));
        for (Py_ssize_t i = 0; i < n; i++) {
            if (items[i] != Py_None) {
                bits[i >> 3] |= (unsigned char)(1u << (i & 7));
            }
        }
    }
    if (kind == COL_FLOAT64 || kind == COL_INT64) {
        data = PyBytes_FromStringAndSize(NULL, n * 8);
        if (data == NULL) {
            goto done;
        }
        char *out = PyBytes_AS_STRING(data);
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *v = items[i];
            if (kind == COL_FLOAT64) {
                double d = 0.0;
                if (PyFloat_Check(v)) {
                    d = PyFloat_AS_DOUBLE(v);
                }
                else if (v != Py_None && PyLong_Check(v) && !PyBool_Check(v)) {
                    d = PyLong_AsDouble(v);
                    if (d == -1.0 && PyErr_Occurred()) {
                        PyErr_Clear();
                        goto fallback;
                    }
                }
                else if (v != Py_None) {
                    goto fallback;
                }
                memcpy(out + i * 8, &d, 8);
            }
            else {
                long long x = 0;
                if (v != Py_None) {
                    int overflow = 0;
                    if (!PyLong_Check(v) || PyBool_Check(v)) {
                        goto fallback;
                    }
                    x = PyLong_AsLongLongAndOverflow(v, &overflow);
                    if (overflow || (x == -1 && PyErr_Occurred())) {
                        PyErr_Clear();
                        goto fallback;
                    }
                }
                memcpy(out + i * 8, &x, 8);
            }
        }
        result = Py_BuildValue("(OOn)", validity ? validity : Py_None, data, nulls);
        goto done;
    }
    if (kind == COL_UTF8) {
        Py_ssize_t total = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *v = items[i];
            if (v == Py_None) {
                continue;
            }
            if (!PyUnicode_Check(v)) {
                goto fallback;
            }
            Py_ssize_t len;
            if (PyUnicode_AsUTF8AndSize(v, &len) == NULL) {
                PyErr_Clear(); /* e.g. a lone surrogate: let pyarrow say what is wrong */
                goto fallback;
            }
            total += len;
            if (total > 0x7fffffff) {
                goto fallback;
            }
        }
        offsets = PyBytes_FromStringAndSize(NULL, (n + 1) * 4);
        data = PyBytes_FromStringAndSize(NULL, total);
        if (offsets == NULL || data == NULL) {
            goto done;
        }
        int *off = (int *)PyBytes_AS_STRING(offsets);
        char *out = PyBytes_AS_STRING(data);
        int pos = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            off[i] = pos;
            PyObject *v = items[i];
            if (v == Py_None) {
                continue;
            }
            Py_ssize_t len;
            const char *utf8 = PyUnicode_AsUTF8AndSize(v, &len);
            memcpy(out + pos, utf8, (size_t)len);
            pos += (int)len;
        }
        off[n] = pos;
        result = Py_BuildValue("(OOOn)", validity ? validity : Py_None, offsets, data, nulls);
        goto done;
    }
    PyErr_SetString(PyExc_ValueError, "column_buffers: unknown kind");
    goto done;
fallback:
    result = Py_NewRef(Py_None);
done:
    Py_XDECREF(validity);
    Py_XDECREF(data);
    Py_XDECREF(offsets);
    Py_DECREF(seq);
    return result;
}

/* SMS segments for a column of texts, as botmeter.process.sms.sms_parts counts them (which stays
   the reference; a test checks the two agree). `widths` maps each BMP code point to its GSM-7
   cost: 0 not in GSM-7, 1 basic, 2 extension (escape + char). */
static long
pack_parts(int kind, const void *data, Py_ssize_t len, const unsigned char *widths, int gsm, long size)
{
    long parts = 1, used = 0;
    for (Py_ssize_t j = 0; j < len; j++) {
        Py_UCS4 cp = PyUnicode_READ(kind, data, j);
        long cost = gsm ? widths[cp] : (cp > 0xFFFF ? 2 : 1);
        if (used + cost > size) {
            parts++;
            used = 0;
        }
        used += cost;
    }
    return parts;
}

static PyObject *
sms_segments(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *texts;
    Py_buffer table;
    if (!PyArg_ParseTuple(args, "Oy*", &texts, &table)) {
        return NULL;
    }
    if (table.len != 65536) {
        PyBuffer_Release(&table);
        PyErr_SetString(PyExc_ValueError, "sms_segments: the width table must have 65536 entries");
        return NULL;
    }
    const unsigned char *widths = (const unsigned char *)table.buf;
    PyObject *seq = PySequence_Fast(texts, "sms_segments: a list or tuple");
    if (seq == NULL) {
        PyBuffer_Release(&table);
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    PyObject *out = PyList_New(n);
    if (out == NULL) {
        goto fail;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = items[i];
        long segments = 1; /* no text, or empty text: carriers bill one segment */
        if (v != Py_None) {
            if (!PyUnicode_Check(v)) {
                Py_DECREF(out);
                out = Py_NewRef(Py_None);
                break;
            }
            int kind = PyUnicode_KIND(v);
            const void *data = PyUnicode_DATA(v);
            Py_ssize_t len = PyUnicode_GET_LENGTH(v);
            long septets = 0, units = 0;
            int gsm = 1, escapes = 0, astral = 0;
            for (Py_ssize_t j = 0; j < len; j++) {
                Py_UCS4 cp = PyUnicode_READ(kind, data, j);
                unsigned char w = cp < 65536 ? widths[cp] : 0;
                if (w == 0) {
                    gsm = 0;
                }
                septets += w;
                escapes |= w == 2;
                astral |= cp > 0xFFFF;
                units += cp > 0xFFFF ? 2 : 1;
            }
            if (gsm) {
                segments = septets <= 160 ? 1 : escapes ? pack_parts(kind, data, len, widths, 1, 153)
                                                        : (septets + 152) / 153;
            }
            else {
                segments = units <= 70 ? 1 : astral ? pack_parts(kind, data, len, widths, 0, 67)
                                                    : (units + 66) / 67;
            }
        }
        PyObject *num = PyFloat_FromDouble((double)segments);
        if (num == NULL) {
            Py_DECREF(out);
            goto fail;
        }
        PyList_SET_ITEM(out, i, num);
    }
    Py_DECREF(seq);
    PyBuffer_Release(&table);
    return out;
fail:
    Py_DECREF(seq);
    PyBuffer_Release(&table);
    return NULL;
}

/* The first `pattern` in data[0:n], or NULL (memmem is not in every C library). */
static const char *
find_bytes(const char *data, Py_ssize_t n, const char *pattern, Py_ssize_t plen)
{
    const char *end = data + n - plen;
    const char *at = data;
    while (at <= end) {
        at = memchr(at, pattern[0], (size_t)(end - at + 1));
        if (at == NULL) {
            return NULL;
        }
        if (memcmp(at, pattern, (size_t)plen) == 0) {
            return at;
        }
        at++;
    }
    return NULL;
}

/* Appends data[from:to] without the occurrences of `pattern` in it to out[*kept:]. */
static void
copy_without(char *out, Py_ssize_t *kept, const char *from, const char *to, const char *pat, Py_ssize_t plen)
{
    const char *hit = plen ? find_bytes(from, to - from, pat, plen) : NULL;
    while (hit != NULL) {
        memcpy(out + *kept, from, (size_t)(hit - from));
        *kept += hit - from;
        from = hit + plen;
        hit = find_bytes(from, to - from, pat, plen);
    }
    memcpy(out + *kept, from, (size_t)(to - from));
    *kept += to - from;
}

/* `data` without data[cut_from:cut_to] and without any occurrence of `pattern` before or after
   it, in one copy: a streamed OpenAI call's ,"usage":null in every chunk and its usage-only event,
   which botmeter asked for and the caller did not (split, join and slicing take about six times
   as long on the bot's thread). The same object when there is nothing to take out. */
static PyObject *
remove_all(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *data;
    const char *pat;
    Py_ssize_t plen, cut_from = 0, cut_to = 0;
    if (!PyArg_ParseTuple(args, "Sy#|nn", &data, &pat, &plen, &cut_from, &cut_to)) {
        return NULL;
    }
    const char *src = PyBytes_AS_STRING(data);
    Py_ssize_t n = PyBytes_GET_SIZE(data);
    if (cut_from < 0 || cut_to > n || cut_from > cut_to) {
        PyErr_Format(PyExc_ValueError, "remove_all: cut %zd:%zd outside the data's %zd bytes", cut_from, cut_to,
                     n);
        return NULL;
    }
    if (cut_from == cut_to && (plen == 0 || find_bytes(src, n, pat, plen) == NULL)) {
        return Py_NewRef(data);
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, n - (cut_to - cut_from));
    if (out == NULL) {
        return NULL;
    }
    char *dst = PyBytes_AS_STRING(out);
    Py_ssize_t kept = 0;
    copy_without(dst, &kept, src, src + cut_from, pat, plen);
    copy_without(dst, &kept, src + cut_to, src + n, pat, plen);
    if (kept != PyBytes_GET_SIZE(out) && _PyBytes_Resize(&out, kept) < 0) {
        return NULL;
    }
    return out;
}

/* The last `pattern` in data[0:n], or NULL. */
static const char *
rfind_bytes(const char *data, Py_ssize_t n, const char *pattern, Py_ssize_t plen)
{
    if (n < plen) {
        return NULL;
    }
    for (const char *at = data + n - plen; at >= data; at--) {
        if (*at == pattern[0] && memcmp(at, pattern, (size_t)plen) == 0) {
            return at;
        }
    }
    return NULL;
}

/* The last `c` in s[lo:hi], or -1. */
static Py_ssize_t
rfind_char(const char *s, Py_ssize_t lo, Py_ssize_t hi, char c)
{
    for (Py_ssize_t i = hi - 1; i >= lo; i--) {
        if (s[i] == c) {
            return i;
        }
    }
    return -1;
}

/* The first `c` in s[lo:hi], or -1. */
static Py_ssize_t
find_char(const char *s, Py_ssize_t lo, Py_ssize_t hi, char c)
{
    if (lo >= hi) {
        return -1;
    }
    const char *at = memchr(s + lo, c, (size_t)(hi - lo));
    return at == NULL ? -1 : at - s;
}

/* The first `pattern` in s[lo:n] as an index, or -1. */
static Py_ssize_t
find_from(const char *s, Py_ssize_t n, Py_ssize_t lo, const char *pattern, Py_ssize_t plen)
{
    if (lo > n) {
        return -1;
    }
    const char *at = find_bytes(s + lo, n - lo, pattern, plen);
    return at == NULL ? -1 : at - s;
}

/* s[0:n] ends with an event's end (a blank line: \n\n, \r\r or \r\n\r\n). */
static int
ends_event(const char *s, Py_ssize_t n)
{
    if (n >= 2 && ((s[n - 2] == '\n' && s[n - 1] == '\n') || (s[n - 2] == '\r' && s[n - 1] == '\r'))) {
        return 1;
    }
    return n >= 4 && memcmp(s + n - 4, "\r\n\r\n", 4) == 0;
}

/* s[0:n] starts with an event's end. */
static int
starts_event_end(const char *s, Py_ssize_t n)
{
    if (n >= 2 && ((s[0] == '\n' && s[1] == '\n') || (s[0] == '\r' && s[1] == '\r'))) {
        return 1;
    }
    return n >= 4 && memcmp(s, "\r\n\r\n", 4) == 0;
}

static int
is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\x0b' || c == '\x0c';
}

#define LIT(s) s, (Py_ssize_t)(sizeof(s) - 1)

/* A non-empty content or refusal string, or a tool call, in s[0:n]. */
static int
has_content(const char *s, Py_ssize_t n)
{
    static const char *keys[] = {"\"content\":\"", "\"refusal\":\""};
    for (int k = 0; k < 2; k++) {
        Py_ssize_t klen = (Py_ssize_t)strlen(keys[k]);
        Py_ssize_t at = find_from(s, n, 0, keys[k], klen);
        while (at >= 0) {
            at += klen;
            if (at >= n || s[at] != '"') {
                return 1;
            }
            at = find_from(s, n, at, keys[k], klen);
        }
    }
    return find_from(s, n, 0, LIT("\"tool_calls\":[")) >= 0;
}

/* One network read of a streamed chat completion, as the OpenAI integration's _step does it in
   Python (_whole_lines, _look, _filter, _usage_event): the whole lines (carry in front) and
   what comes after them; what they show (the first non-empty model, whether a data line names
   none in the compact form, whether content arrived); and the lines without "usage":null and
   without the usage-only event, with that event's data. `out` is None when the lines need the
   Python filter (a usage object that is not the compact usage-only event, cut whole). One call
   instead of a dozen Python ones: a read's time on the bot's thread 12 us instead of 20 (BENCHMARKS.md).
   -> (lines, rest, out, model, no_model, content, usage_line) */
static PyObject *
stream_step(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *chunk, *carry;
    int see, at_event_start;
    if (!PyArg_ParseTuple(args, "SSpp", &chunk, &carry, &see, &at_event_start)) {
        return NULL;
    }
    PyObject *joined, *lines = NULL, *rest = NULL, *out = NULL, *model = NULL, *usage = NULL;
    if (PyBytes_GET_SIZE(carry)) {
        joined = PyBytes_FromStringAndSize(NULL, PyBytes_GET_SIZE(carry) + PyBytes_GET_SIZE(chunk));
        if (joined == NULL) {
            return NULL;
        }
        memcpy(PyBytes_AS_STRING(joined), PyBytes_AS_STRING(carry), (size_t)PyBytes_GET_SIZE(carry));
        memcpy(PyBytes_AS_STRING(joined) + PyBytes_GET_SIZE(carry), PyBytes_AS_STRING(chunk),
               (size_t)PyBytes_GET_SIZE(chunk));
    }
    else {
        joined = Py_NewRef(chunk);
    }
    const char *j = PyBytes_AS_STRING(joined);
    Py_ssize_t jn = PyBytes_GET_SIZE(joined);
    if (jn && (j[jn - 1] == '\n' || j[jn - 1] == '\r')) {
        lines = joined;
        rest = PyBytes_FromStringAndSize(NULL, 0);
    }
    else {
        Py_ssize_t lf = rfind_char(j, 0, jn, '\n'), cr = rfind_char(j, 0, jn, '\r');
        Py_ssize_t end = (lf > cr ? lf : cr) + 1;
        lines = PyBytes_FromStringAndSize(j, end);
        rest = PyBytes_FromStringAndSize(j + end, jn - end);
        Py_DECREF(joined);
    }
    if (lines == NULL || rest == NULL) {
        goto fail;
    }
    const char *s = PyBytes_AS_STRING(lines);
    Py_ssize_t n = PyBytes_GET_SIZE(lines);
    int no_model = 0, content = 0;
    if (see) {
        Py_ssize_t at = find_from(s, n, 0, LIT("\"model\":\""));
        no_model = at < 0 && find_from(s, n, 0, LIT("data:")) >= 0;
        while (at >= 0) {
            Py_ssize_t end = find_char(s, at + 9, n, '"');
            if (end > at + 9) {
                model = PyBytes_FromStringAndSize(s + at + 9, end - at - 9);
                if (model == NULL) {
                    goto fail;
                }
                break;
            }
            at = find_from(s, n, at + 9, LIT("\"model\":\""));
        }
        content = has_content(s, n);
    }
    Py_ssize_t at = find_from(s, n, 0, LIT("\"usage\":"));
    if (at < 0) {
        out = Py_NewRef(lines);
        goto done;
    }
    int spaced = at + 8 < n && s[at + 8] == ' ';
    const char *null = spaced ? ", \"usage\": null" : ",\"usage\":null";
    Py_ssize_t null_len = (Py_ssize_t)strlen(null);
    const char *last = rfind_bytes(s, n, LIT("\"usage\":"));
    at = last == NULL ? at : last - s; /* (found: the first one is there) */
    int object = (at + 8 < n && s[at + 8] == '{') ||
                 (at + 9 < n && is_space(s[at + 8]) && s[at + 9] == '{');
    Py_ssize_t cut_from = 0, cut_to = 0;
    if (object) {
        Py_ssize_t start = rfind_char(s, 0, at, '\n') + 1;
        Py_ssize_t start_cr = rfind_char(s, start, at, '\r') + 1;
        start = start_cr > start ? start_cr : start;
        Py_ssize_t end = find_char(s, at, n, '\n');
        Py_ssize_t cr = find_char(s, at, end < 0 ? n : end, '\r');
        end = cr < 0 ? end : cr;
        if (end < 0 || n - start < 5 || memcmp(s + start, "data:", 5) != 0 ||
            !(ends_event(s, start) || (start == 0 && at_event_start)) || !starts_event_end(s + end, n - end) ||
            find_from(s, end, start + 5, LIT("\"choices\":[]")) < 0) {
            out = Py_NewRef(Py_None); /* the Python filter decides */
            goto done;
        }
        usage = PyBytes_FromStringAndSize(s + start + 5, end - start - 5);
        if (usage == NULL) {
            goto fail;
        }
        cut_from = start;
        cut_to = end + ((end + 1 < n && s[end] == '\r' && s[end + 1] == '\n') ? 2 : 1);
    }
    out = PyBytes_FromStringAndSize(NULL, n - (cut_to - cut_from));
    if (out == NULL) {
        goto fail;
    }
    Py_ssize_t kept = 0;
    copy_without(PyBytes_AS_STRING(out), &kept, s, s + cut_from, null, null_len);
    copy_without(PyBytes_AS_STRING(out), &kept, s + cut_to, s + n, null, null_len);
    if (kept != PyBytes_GET_SIZE(out) && _PyBytes_Resize(&out, kept) < 0) {
        goto fail;
    }
done:
    return Py_BuildValue("(NNNNOON)", lines, rest, out, model ? model : Py_NewRef(Py_None),
                         no_model ? Py_True : Py_False, content ? Py_True : Py_False,
                         usage ? usage : Py_NewRef(Py_None));
fail:
    Py_XDECREF(lines);
    Py_XDECREF(rest);
    Py_XDECREF(out);
    Py_XDECREF(model);
    Py_XDECREF(usage);
    return NULL;
}

static PyMethodDef fastpath_functions[] = {
    {"sms_segments", sms_segments, METH_VARARGS,
     "sms_segments(texts, widths) -> list of segment counts (floats); None if a text is not a str."},
    {"column_buffers", column_buffers, METH_VARARGS,
     "column_buffers(values, kind) -> Arrow buffers for kind 0 float64, 1 int64, 2 utf8; None to fall back."},
    {"remove_all", remove_all, METH_VARARGS,
     "remove_all(data, pattern, cut_from=0, cut_to=0) -> data without data[cut_from:cut_to] and without pattern."},
    {"stream_step", stream_step, METH_VARARGS,
     "stream_step(chunk, carry, see, at_event_start) -> (lines, rest, out, model, no_model, content, usage_line)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef fastpath_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "botmeter._fastpath",
    .m_doc = "C fast path for botmeter's track calls.",
    .m_size = -1,
    .m_methods = fastpath_functions,
};

PyMODINIT_FUNC
PyInit__fastpath(void)
{
    if (PyType_Ready(&BufferType) < 0 || PyType_Ready(&TrackFnType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&fastpath_module);
    if (m == NULL) {
        return NULL;
    }
    Py_INCREF(&BufferType);
    if (PyModule_AddObject(m, "Buffer", (PyObject *)&BufferType) < 0) {
        Py_DECREF(&BufferType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&TrackFnType);
    if (PyModule_AddObject(m, "TrackFn", (PyObject *)&TrackFnType) < 0) {
        Py_DECREF(&TrackFnType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
