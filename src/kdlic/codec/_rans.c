/* rANS decoding of CompressAI streams straight into arrays (kdlic.codec._rans).
 *
 * CompressAI's C++ coder (Rans64, 16-bit precision, 32-bit renormalisation words) is
 * fast, but its Python binding converts every table index and every decoded symbol
 * between Python lists and C++ vectors: for a Kodak image with 300k latent elements
 * that conversion costs several times the decoding itself. This module decodes the
 * same streams (bit for bit the same symbols as CompressAI's RansDecoder without its
 * bypass mode, which kdlic never uses) reading and writing buffers only.
 *
 * Safe on any input: every table index is checked against the table count, the CDF
 * search is bounded by the table's length, and words past the end of the stream read
 * as zero (what padding the stream with zeros gives; see kdlic.codec.rans).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#define PRECISION 16
#define RANS_L (1ull << 31)

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

/* Buffers arrive as plain bytes (the "y*" format asks for no item type): the caller
 * passes contiguous int32 arrays; only the length can be checked here. */
static int check_int32(Py_buffer *b, const char *name) {
    if (b->len % 4 != 0) {
        PyErr_Format(PyExc_ValueError, "%s: not a whole number of int32 items", name);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(decode_doc,
"decode(stream, indexes, cdfs, starts, lengths, out)\n--\n\n"
"Decode len(indexes) symbols of a CompressAI rANS stream into out.\n\n"
"stream: bytes; indexes: int32 table index per symbol; cdfs: int32, all tables' CDFs\n"
"one after another (each from 0 to 2**16); starts, lengths: int32 per table, where its\n"
"CDF begins in cdfs and how many entries it has; out: writable int32, len(indexes),\n"
"receives each symbol's position in its table (0 .. length - 2).");

static PyObject *decode(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer stream, idx, cdf, start, len, out;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*w*", &stream, &idx, &cdf, &start, &len, &out))
        return NULL;
    PyObject *result = NULL;
    struct { int32_t start, length; } *table = NULL;
    if (check_int32(&idx, "indexes") || check_int32(&cdf, "cdfs") ||
        check_int32(&start, "starts") || check_int32(&len, "lengths") ||
        check_int32(&out, "out"))
        goto done;
    const Py_ssize_t n = idx.len / 4, n_tables = start.len / 4, n_cdf = cdf.len / 4;
    if (out.len / 4 != n || len.len / 4 != n_tables) {
        PyErr_SetString(PyExc_ValueError, "out/indexes or starts/lengths differ in length");
        goto done;
    }
    const int32_t *indexes = idx.buf, *cdfs = cdf.buf;
    int32_t *symbols = out.buf;
    /* The tables are copied, then checked: the caller's buffers may change while the GIL
     * is released (another thread, or out aliasing them), and a table checked in place
     * could then point outside cdfs. */
    table = PyMem_Malloc((size_t)(n_tables > 0 ? n_tables : 1) * sizeof *table);
    if (table == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t t = 0; t < n_tables; ++t) {
        table[t].start = ((const int32_t *)start.buf)[t];
        table[t].length = ((const int32_t *)len.buf)[t];
        if (table[t].length < 2 || table[t].start < 0 ||
            (Py_ssize_t)table[t].start + table[t].length > n_cdf) {
            PyErr_Format(PyExc_ValueError, "table %zd lies outside cdfs", t);
            goto done;
        }
    }
    Reader r = {stream.buf, stream.len, 0};
    int bad_index = 0;
    Py_BEGIN_ALLOW_THREADS
    uint64_t x = next_word(&r);
    x |= (uint64_t)next_word(&r) << 32;
    const uint32_t mask = (1u << PRECISION) - 1;
    for (Py_ssize_t i = 0; i < n; ++i) {
        const int32_t t = indexes[i];
        if (t < 0 || t >= n_tables) {
            bad_index = 1;
            break;
        }
        const int32_t *c = cdfs + table[t].start;
        const int32_t last = table[t].length - 2;  /* highest symbol position */
        const uint32_t cum = (uint32_t)(x & mask);
        int32_t s = 0;
        while (s < last && (uint32_t)c[s + 1] <= cum) ++s;
        /* unsigned arithmetic: any CDF values, even hostile ones, are defined behaviour */
        x = (uint64_t)((uint32_t)c[s + 1] - (uint32_t)c[s]) * (x >> PRECISION) + cum -
            (uint32_t)c[s];
        if (x < RANS_L) x = (x << 32) | next_word(&r);
        symbols[i] = s;
    }
    Py_END_ALLOW_THREADS
    if (bad_index) {
        PyErr_SetString(PyExc_ValueError, "table index out of range");
        goto done;
    }
    result = Py_None;
    Py_INCREF(result);
done:
    PyMem_Free(table);
    PyBuffer_Release(&stream);
    PyBuffer_Release(&idx);
    PyBuffer_Release(&cdf);
    PyBuffer_Release(&start);
    PyBuffer_Release(&len);
    PyBuffer_Release(&out);
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
