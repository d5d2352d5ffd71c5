/* rANS decoding of CompressAI streams straight into arrays (kdlic.codec._rans).
 *
 * CompressAI's C++ coder (Rans64, 16-bit precision, 32-bit renormalisation words) is
 * fast, but its Python binding converts every table index and every decoded symbol
 * between Python lists and C++ vectors: for a Kodak image with 300k latent elements
 * that conversion costs several times the decoding itself. This module decodes the
 * same streams (bit for bit the same symbols as CompressAI's RansDecoder without its
 * bypass mode, which kdlic never uses) reading and writing buffers only, and does in
 * its loop what would otherwise be whole-array NumPy passes (each a few tenths of a
 * millisecond on a Kodak image): the table of each element from its fixed-point scale,
 * kdlic's stream order, and symbol position -> value.
 *
 * Safe on any input: every table index is checked against the table count, the CDF
 * search is bounded by the table's length, value maps are checked to lie inside
 * to_value, and words past the end of the stream read as zero (what padding the stream
 * with zeros gives; see kdlic.codec.rans).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define PRECISION 16
#define RANS_L (1ull << 31)
/* A symbol search starts from the highest position whose CDF value is at most the
 * state's slot rounded down to a multiple of 2**STEP_BITS (2**(16 - STEP_BITS) starts
 * per table, built per call), so it scans past the few CDF entries inside that step
 * instead of from position 0: a short, mostly untaken loop rather than an unpredictable
 * one (2.56 -> 2.11 ms for kodim14's 287k symbols). On a non-decreasing CDF the symbol
 * is the one a scan from 0 finds. */
#define STEP_BITS 8
#define STEPS (1 << (PRECISION - STEP_BITS))

typedef struct {
    int32_t start, length, base;  /* CDF start in cdfs, CDF length, value map start */
} Table;

typedef struct {
    const uint8_t *data;
    Py_ssize_t size, pos;
} Reader;

/* The next little-endian 32-bit word of the stream; zero past its end. */
static uint32_t next_word(Reader *r) {
    uint32_t w = 0;
    for (int i = 0; i < 4; ++i, ++r->pos)
        if (r->pos < r->size) w |= (uint32_t)r->data[r->pos] << (8 * i);
    return w;
}

typedef struct {
    Reader reader;
    uint64_t x;                 /* the rANS state */
    const Table *tables;
    const uint16_t *starts;     /* STEPS search starts per table */
    const int32_t *cdfs, *to_value;
    int32_t *values, *escaped;
    Py_ssize_t n_escaped;
} State;

/* Decode element i with table t. */
static inline void decode_one(State *d, Py_ssize_t i, int32_t t) {
    const Table tab = d->tables[t];
    const int32_t *c = d->cdfs + tab.start;
    const int32_t last = tab.length - 2;  /* highest symbol position: the escape */
    const uint32_t cum = (uint32_t)(d->x & ((1u << PRECISION) - 1));
    int32_t s = d->starts[(size_t)t * STEPS + (cum >> STEP_BITS)];  /* <= last */
    while (s < last && (uint32_t)c[s + 1] <= cum) ++s;
    /* unsigned arithmetic: any CDF values, even hostile ones, are defined behaviour */
    d->x = (uint64_t)((uint32_t)c[s + 1] - (uint32_t)c[s]) * (d->x >> PRECISION) + cum -
           (uint32_t)c[s];
    if (d->x < RANS_L) d->x = (d->x << 32) | next_word(&d->reader);
    if (s == last) {
        d->values[i] = 0;
        d->escaped[d->n_escaped++] = (int32_t)i;
    } else {
        d->values[i] = d->to_value[tab.base + s];
    }
}

typedef struct {
    const int32_t *indexes;  /* a table index per element, or (lut != NULL): */
    const double *scales;    /* a fixed-point scale per element, its table lut[scale] */
    const uint8_t *lut;
    Py_ssize_t top, n_tables; /* len(lut) - 1 */
} Keys;

/* The table of element i; -1 when its index is out of range. */
static inline int32_t table_of(const Keys *k, Py_ssize_t i) {
    if (k->lut != NULL) {
        const double s = k->scales[i];
        /* clamp to 0..top (a NaN goes to 0), then truncate: fixed-point scales are
         * integers, and lut maps each to TableSelector's table */
        const Py_ssize_t q = !(s > 0) ? 0 : s >= (double)k->top ? k->top : (Py_ssize_t)s;
        return k->lut[q];
    }
    const int32_t t = k->indexes[i];
    return (t < 0 || t >= k->n_tables) ? -1 : t;
}

/* Buffers arrive as plain bytes (the "y*" format asks for no item type): the caller
 * passes contiguous arrays of the documented types; only the length can be checked. */
static int check_items(Py_buffer *b, Py_ssize_t size, const char *name) {
    if (b->len % size != 0) {
        PyErr_Format(PyExc_ValueError, "%s: not a whole number of %zd-byte items", name, size);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(decode_doc,
"decode(stream, keys, lut, cdfs, starts, lengths, bases, to_value, fast_length, out,\n"
"       escaped) -> int\n--\n\n"
"Decode len(out) symbols of a CompressAI rANS stream as values; returns how many are\n"
"escape symbols (listed at the start of escaped).\n\n"
"keys: the table of each element: int32 table indexes when lut is empty, else float64\n"
"fixed-point scales whose table is lut[min(max(scale, 0), len(lut) - 1)] (lut: uint8).\n"
"cdfs: int32, all tables' CDFs one after another (each from 0 to 2**16); starts,\n"
"lengths, bases: int32 per table, where its CDF begins in cdfs, how many entries it\n"
"has, where its values begin in to_value (int32, the value of each symbol position;\n"
"the last position, length - 2, is the escape symbol and has none).\n"
"Stream order: first the elements whose table has at most fast_length CDF entries,\n"
"then the others, each group in element order.\n"
"out: writable int32, receives each element's value (0 for an escape symbol);\n"
"escaped: writable int32 as long as out, receives the elements with an escape symbol\n"
"in stream order.");

static PyObject *decode(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer stream, key, lut, cdf, start, len, base, map, out, esc;
    int fast_length;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*y*y*iw*w*", &stream, &key, &lut, &cdf, &start,
                          &len, &base, &map, &fast_length, &out, &esc))
        return NULL;
    PyObject *result = NULL;
    Table *tables = NULL;
    uint16_t *starts = NULL;
    uint8_t *lut_copy = NULL;
    int32_t *large = NULL;
    const int by_scale = lut.len > 0;
    if (check_items(&key, by_scale ? 8 : 4, by_scale ? "scales" : "indexes") ||
        check_items(&cdf, 4, "cdfs") || check_items(&start, 4, "starts") ||
        check_items(&len, 4, "lengths") || check_items(&base, 4, "bases") ||
        check_items(&map, 4, "to_value") || check_items(&out, 4, "out") ||
        check_items(&esc, 4, "escaped"))
        goto done;
    const Py_ssize_t n = out.len / 4, n_tables = start.len / 4, n_cdf = cdf.len / 4,
                     n_map = map.len / 4;
    if (key.len / (by_scale ? 8 : 4) != n || esc.len / 4 != n) {
        PyErr_SetString(PyExc_ValueError, "keys/out/escaped differ in length");
        goto done;
    }
    if (len.len / 4 != n_tables || base.len / 4 != n_tables) {
        PyErr_SetString(PyExc_ValueError, "starts/lengths/bases differ in length");
        goto done;
    }
    /* Tables and lut are copied, then checked: the caller's buffers may change while the
     * GIL is released (another thread, or out aliasing them), and a table checked in
     * place could then point outside cdfs. */
    tables = PyMem_Malloc((size_t)(n_tables > 0 ? n_tables : 1) * sizeof *tables);
    starts = PyMem_Malloc((size_t)(n_tables > 0 ? n_tables : 1) * STEPS * sizeof *starts);
    large = PyMem_Malloc((size_t)(n > 0 ? n : 1) * sizeof *large);
    lut_copy = PyMem_Malloc((size_t)(by_scale ? lut.len : 1));
    if (tables == NULL || starts == NULL || large == NULL || lut_copy == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t t = 0; t < n_tables; ++t) {
        Table *tab = &tables[t];
        tab->start = ((const int32_t *)start.buf)[t];
        tab->length = ((const int32_t *)len.buf)[t];
        tab->base = ((const int32_t *)base.buf)[t];
        if (tab->length < 2 || tab->start < 0 || (Py_ssize_t)tab->start + tab->length > n_cdf) {
            PyErr_Format(PyExc_ValueError, "table %zd lies outside cdfs", t);
            goto done;
        }
        if (tab->base < 0 || (Py_ssize_t)tab->base + tab->length - 2 > n_map) {
            PyErr_Format(PyExc_ValueError, "table %zd's values lie outside to_value", t);
            goto done;
        }
        if (tab->length - 2 > UINT16_MAX) {
            PyErr_Format(PyExc_ValueError, "table %zd has more than 65536 symbols", t);
            goto done;
        }
        /* whatever cdfs holds (and if it changes later), a start is at most the last
         * position, all a search needs to stay inside the table */
        const int32_t *c = (const int32_t *)cdf.buf + tab->start;
        int32_t s = 0;
        for (uint32_t k = 0; k < STEPS; ++k) {
            while (s < tab->length - 2 && (uint32_t)c[s + 1] <= k << STEP_BITS) ++s;
            starts[(size_t)t * STEPS + k] = (uint16_t)s;
        }
    }
    if (by_scale) {
        memcpy(lut_copy, lut.buf, (size_t)lut.len);
        for (Py_ssize_t q = 0; q < lut.len; ++q)
            if (lut_copy[q] >= n_tables) {
                PyErr_SetString(PyExc_ValueError, "lut names a table that does not exist");
                goto done;
            }
    }
    const Keys keys = {key.buf, key.buf, by_scale ? lut_copy : NULL, lut.len - 1, n_tables};
    State d = {{stream.buf, stream.len, 0}, 0, tables, starts, cdf.buf, map.buf, out.buf,
               esc.buf, 0};
    Py_ssize_t n_large = 0;
    int32_t t = 0;
    Py_BEGIN_ALLOW_THREADS
    d.x = next_word(&d.reader);
    d.x |= (uint64_t)next_word(&d.reader) << 32;
    /* the elements of small tables; those of large tables are set aside, then decoded */
    for (Py_ssize_t i = 0; i < n && t >= 0; ++i) {
        t = table_of(&keys, i);
        if (t >= 0 && tables[t].length > fast_length)
            large[n_large++] = (int32_t)i;
        else if (t >= 0)
            decode_one(&d, i, t);
    }
    for (Py_ssize_t j = 0; j < n_large && t >= 0; ++j) {
        t = table_of(&keys, large[j]);  /* (keys may have changed since: check again) */
        if (t >= 0) decode_one(&d, large[j], t);
    }
    Py_END_ALLOW_THREADS
    if (t < 0) {
        PyErr_SetString(PyExc_ValueError, "table index out of range");
        goto done;
    }
    result = PyLong_FromSsize_t(d.n_escaped);
done:
    PyMem_Free(tables);
    PyMem_Free(starts);
    PyMem_Free(large);
    PyMem_Free(lut_copy);
    PyBuffer_Release(&stream);
    PyBuffer_Release(&key);
    PyBuffer_Release(&lut);
    PyBuffer_Release(&cdf);
    PyBuffer_Release(&start);
    PyBuffer_Release(&len);
    PyBuffer_Release(&base);
    PyBuffer_Release(&map);
    PyBuffer_Release(&out);
    PyBuffer_Release(&esc);
    return result;
}

static PyMethodDef methods[] = {
    {"decode", decode, METH_VARARGS, decode_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_rans",
    "rANS decoding of CompressAI streams into arrays (see decode).", -1, methods,
};

PyMODINIT_FUNC PyInit__rans(void) { return PyModule_Create(&module); }
