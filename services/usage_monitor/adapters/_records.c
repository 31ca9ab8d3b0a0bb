/* The usage hot path's record reader, compiled: one `usage.records` message in, the values
 * the pipeline needs out, or None.
 *
 * Why: a worker spends most of its own CPU per record in pydantic's JSON validation, in
 * reading the event time back as a POSIX timestamp, and in hashing the record id; in Python
 * these cost ~3.3 us a record (validation 2.3, timestamp 0.4, digest 0.6), here ~0.5 us
 * (docs/benchmarks.md, sixth round).
 *
 * It is a *fast path*, never a second definition of the contract. It accepts only the plain
 * form of a record: one JSON object, keys and strings without escapes, ASCII only, integers
 * without sign, fraction or exponent, an event time written YYYY-MM-DDTHH:MM:SS[.ffffff]
 * followed by Z or +HH:MM/-HH:MM, no field twice, unknown fields only with scalar values.
 * Everything else, valid or not, returns None and the caller validates the message with the
 * pydantic model (`simwatch_contracts.UsageRecord`), which decides and explains the errors.
 * So this reader only has to be right about what it accepts: the same values pydantic gives,
 * and nothing pydantic refuses (tests/unit/test_record_scan.py compares them).
 *
 * scan(value: bytes) -> (record_id: str, iccid: str, event_ts: float, total_bytes: int,
 *                        digest: int) | None
 *   event_ts is datetime.timestamp() of the event time; iccid is upper-cased (the model's
 *   to_upper); digest is `dedupe.digest(record_id)`: BLAKE2b with an 8-byte digest, read
 *   big-endian as a signed 64-bit integer.
 * digest(record_id: bytes) -> int, the same digest (ids of 1..128 bytes).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* ---- BLAKE2b (RFC 7693), one block: ids are at most 128 bytes ---- */

static const uint64_t IV[8] = {
    0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL,
    0xa54ff53a5f1d36f1ULL, 0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL,
    0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL};

static const uint8_t SIGMA[12][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
    {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
    {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
    {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
    {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3}};

#define ROTR64(x, n) (((x) >> (n)) | ((x) << (64 - (n))))
#define G(a, b, c, d, x, y)          \
    do {                             \
        a = a + b + (x);             \
        d = ROTR64(d ^ a, 32);       \
        c = c + d;                   \
        b = ROTR64(b ^ c, 24);       \
        a = a + b + (y);             \
        d = ROTR64(d ^ a, 16);       \
        c = c + d;                   \
        b = ROTR64(b ^ c, 63);       \
    } while (0)

/* The digest as dedupe.digest reads it: the 8 output bytes, big-endian, signed. */
static int64_t blake2b_id(const unsigned char *in, size_t len) {
    unsigned char block[128] = {0};
    uint64_t m[16], v[16];
    uint64_t h0 = IV[0] ^ 0x01010000ULL ^ 8ULL; /* fanout 1, depth 1, no key, 8 bytes out */
    memcpy(block, in, len);
    for (int i = 0; i < 16; i++) {
        uint64_t w = 0;
        for (int j = 7; j >= 0; j--) w = (w << 8) | block[i * 8 + j];
        m[i] = w;
    }
    v[0] = h0;
    for (int i = 1; i < 8; i++) v[i] = IV[i];
    for (int i = 0; i < 8; i++) v[8 + i] = IV[i];
    v[12] ^= (uint64_t)len; /* bytes compressed so far */
    v[14] = ~v[14];         /* the last block */
    for (int r = 0; r < 12; r++) {
        const uint8_t *s = SIGMA[r];
        G(v[0], v[4], v[8], v[12], m[s[0]], m[s[1]]);
        G(v[1], v[5], v[9], v[13], m[s[2]], m[s[3]]);
        G(v[2], v[6], v[10], v[14], m[s[4]], m[s[5]]);
        G(v[3], v[7], v[11], v[15], m[s[6]], m[s[7]]);
        G(v[0], v[5], v[10], v[15], m[s[8]], m[s[9]]);
        G(v[1], v[6], v[11], v[12], m[s[10]], m[s[11]]);
        G(v[2], v[7], v[8], v[13], m[s[12]], m[s[13]]);
        G(v[3], v[4], v[9], v[14], m[s[14]], m[s[15]]);
    }
    uint64_t h = h0 ^ v[0] ^ v[8];
    return (int64_t)__builtin_bswap64(h); /* little-endian output bytes, read big-endian */
}

/* ---- the JSON subset ---- */

typedef struct {
    const unsigned char *p, *end;
} Cur;

static inline void skip_ws(Cur *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

/* A string without escapes, control characters or non-ASCII bytes. */
static int read_str(Cur *c, const unsigned char **s, Py_ssize_t *n) {
    if (c->p >= c->end || *c->p != '"') return 0;
    const unsigned char *q = ++c->p;
    while (c->p < c->end) {
        unsigned char ch = *c->p;
        if (ch == '"') {
            *s = q;
            *n = c->p - q;
            c->p++;
            return 1;
        }
        if (ch == '\\' || ch < 0x20 || ch >= 0x80) return 0;
        c->p++;
    }
    return 0;
}

/* An integer without sign, fraction or exponent, at most 15 digits. */
static int read_uint(Cur *c, int64_t *out) {
    const unsigned char *q = c->p;
    int64_t v = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        if (c->p - q >= 15) return 0;
        v = v * 10 + (*c->p - '0');
        c->p++;
    }
    if (c->p == q || (c->p - q > 1 && *q == '0')) return 0;
    if (c->p < c->end && (*c->p == '.' || *c->p == 'e' || *c->p == 'E')) return 0;
    *out = v;
    return 1;
}

static int read_digits(Cur *c, int max) {
    const unsigned char *q = c->p;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        if (c->p - q >= max) return 0;
        c->p++;
    }
    return c->p > q;
}

/* The value of a field the model ignores: a plain string, a modest number, true, false or
 * null. An object, an array or anything unusual: 0 (the slow path decides). */
static int skip_scalar(Cur *c) {
    const unsigned char *s;
    Py_ssize_t n;
    if (c->p >= c->end) return 0;
    switch (*c->p) {
    case '"':
        return read_str(c, &s, &n);
    case 't':
        if (c->end - c->p >= 4 && memcmp(c->p, "true", 4) == 0) return c->p += 4, 1;
        return 0;
    case 'f':
        if (c->end - c->p >= 5 && memcmp(c->p, "false", 5) == 0) return c->p += 5, 1;
        return 0;
    case 'n':
        if (c->end - c->p >= 4 && memcmp(c->p, "null", 4) == 0) return c->p += 4, 1;
        return 0;
    default:
        if (*c->p == '-') c->p++;
        {
            const unsigned char *q = c->p;
            if (!read_digits(c, 15)) return 0;
            if (c->p - q > 1 && *q == '0') return 0;
        }
        if (c->p < c->end && *c->p == '.') {
            c->p++;
            if (!read_digits(c, 15)) return 0;
        }
        if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) return 0;
        return 1;
    }
}

/* ---- the event time ---- */

static int num2(const unsigned char *s) {
    if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9') return -1;
    return (s[0] - '0') * 10 + (s[1] - '0');
}

static int64_t days_from_civil(int64_t y, int64_t m, int64_t d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m) {
    static const int dm[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) return 29;
    return dm[m - 1];
}

/* YYYY-MM-DDTHH:MM:SS[.f{1,6}](Z|+HH:MM|-HH:MM), years 1971-2199 (their microseconds
 * since 1970 are exact in a double, as datetime.timestamp() computes them). */
static int read_time(const unsigned char *s, Py_ssize_t n, int64_t *us) {
    if (n < 20) return 0;
    if (s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':') return 0;
    int y1 = num2(s), y2 = num2(s + 2), mo = num2(s + 5), d = num2(s + 8);
    int hh = num2(s + 11), mi = num2(s + 14), ss = num2(s + 17);
    if (y1 < 0 || y2 < 0 || mo < 0 || d < 0 || hh < 0 || mi < 0 || ss < 0) return 0;
    int y = y1 * 100 + y2;
    if (y < 1971 || y > 2199 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo)) return 0;
    if (hh > 23 || mi > 59 || ss > 59) return 0;
    Py_ssize_t i = 19;
    int64_t frac = 0;
    if (s[i] == '.') {
        int digits = 0;
        i++;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            if (++digits > 6) return 0;
            frac = frac * 10 + (s[i] - '0');
            i++;
        }
        if (digits == 0) return 0;
        for (; digits < 6; digits++) frac *= 10;
    }
    int off;
    if (i + 1 == n && s[i] == 'Z') {
        off = 0;
    } else if (i + 6 == n && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':') {
        int oh = num2(s + i + 1), om = num2(s + i + 4);
        if (oh < 0 || om < 0 || oh > 23 || om > 59) return 0;
        off = (oh * 3600 + om * 60) * (s[i] == '-' ? -1 : 1);
    } else {
        return 0;
    }
    int64_t secs = days_from_civil(y, mo, d) * 86400 + hh * 3600 + mi * 60 + ss - off;
    *us = secs * 1000000 + frac;
    return 1;
}

/* ---- the record ---- */

#define MAX_RECORD_BYTES (((int64_t)1) << 40)

static PyObject *ascii_str(const unsigned char *s, Py_ssize_t n, int upper) {
    PyObject *out = PyUnicode_New(n, 127);
    if (out == NULL) return NULL;
    Py_UCS1 *dst = PyUnicode_1BYTE_DATA(out);
    if (upper) {
        for (Py_ssize_t i = 0; i < n; i++)
            dst[i] = (s[i] >= 'a' && s[i] <= 'z') ? (Py_UCS1)(s[i] - 32) : s[i];
    } else {
        memcpy(dst, s, n);
    }
    return out;
}

enum { F_ID = 1, F_ICCID = 2, F_TIME = 4, F_UP = 8, F_DOWN = 16, F_ALL = 31 };

static int key_is(const unsigned char *k, Py_ssize_t n, const char *name) {
    return (size_t)n == strlen(name) && memcmp(k, name, n) == 0;
}

static PyObject *scan(PyObject *self, PyObject *arg) {
    char *buf;
    Py_ssize_t len;
    if (!PyBytes_Check(arg)) Py_RETURN_NONE;
    if (PyBytes_AsStringAndSize(arg, &buf, &len) < 0) return NULL;
    Cur c = {(const unsigned char *)buf, (const unsigned char *)buf + len};
    const unsigned char *id = NULL, *iccid = NULL;
    Py_ssize_t id_n = 0, iccid_n = 0;
    int64_t us = 0, up = 0, down = 0;
    int seen = 0;

    skip_ws(&c);
    if (c.p >= c.end || *c.p != '{') Py_RETURN_NONE;
    c.p++;
    skip_ws(&c);
    if (c.p < c.end && *c.p == '}') Py_RETURN_NONE; /* {}: fields missing */
    for (;;) {
        const unsigned char *k, *s;
        Py_ssize_t kn, sn;
        skip_ws(&c);
        if (!read_str(&c, &k, &kn)) Py_RETURN_NONE;
        skip_ws(&c);
        if (c.p >= c.end || *c.p != ':') Py_RETURN_NONE;
        c.p++;
        skip_ws(&c);
        int field = key_is(k, kn, "record_id")    ? F_ID
                    : key_is(k, kn, "iccid")      ? F_ICCID
                    : key_is(k, kn, "event_time") ? F_TIME
                    : key_is(k, kn, "bytes_up")   ? F_UP
                    : key_is(k, kn, "bytes_down") ? F_DOWN
                                                  : 0;
        if (field & seen) Py_RETURN_NONE; /* a field twice */
        seen |= field;
        switch (field) {
        case F_ID:
            if (!read_str(&c, &id, &id_n) || id_n < 1 || id_n > 128) Py_RETURN_NONE;
            for (Py_ssize_t i = 0; i < id_n; i++)
                if (id[i] < 0x21 || id[i] > 0x7e) Py_RETURN_NONE;
            break;
        case F_ICCID:
            if (!read_str(&c, &iccid, &iccid_n) || (iccid_n != 19 && iccid_n != 20))
                Py_RETURN_NONE;
            if (iccid[0] != '8' || iccid[1] != '9') Py_RETURN_NONE;
            for (Py_ssize_t i = 2; i < iccid_n; i++) {
                unsigned char ch = iccid[i];
                if (!((ch >= '0' && ch <= '9') || (ch >= 'A' && ch <= 'Z') ||
                      (ch >= 'a' && ch <= 'z')))
                    Py_RETURN_NONE;
            }
            break;
        case F_TIME:
            if (!read_str(&c, &s, &sn) || !read_time(s, sn, &us)) Py_RETURN_NONE;
            break;
        case F_UP:
            if (!read_uint(&c, &up) || up > MAX_RECORD_BYTES) Py_RETURN_NONE;
            break;
        case F_DOWN:
            if (!read_uint(&c, &down) || down > MAX_RECORD_BYTES) Py_RETURN_NONE;
            break;
        default:
            if (!skip_scalar(&c)) Py_RETURN_NONE;
        }
        skip_ws(&c);
        if (c.p >= c.end) Py_RETURN_NONE;
        if (*c.p == ',') {
            c.p++;
            continue;
        }
        if (*c.p != '}') Py_RETURN_NONE;
        c.p++;
        break;
    }
    skip_ws(&c);
    if (c.p != c.end || seen != F_ALL) Py_RETURN_NONE;

    PyObject *rid = ascii_str(id, id_n, 0);
    PyObject *card = rid ? ascii_str(iccid, iccid_n, 1) : NULL;
    if (card == NULL) {
        Py_XDECREF(rid);
        return NULL;
    }
    /* As datetime.timestamp(): exact microseconds over 10**6, correctly rounded. */
    double ts = (double)us / 1e6;
    return Py_BuildValue("(NNdLL)", rid, card, ts, (long long)(up + down),
                         (long long)blake2b_id(id, (size_t)id_n));
}

static PyObject *digest(PyObject *self, PyObject *arg) {
    char *buf;
    Py_ssize_t len;
    if (PyBytes_AsStringAndSize(arg, &buf, &len) < 0) return NULL;
    if (len < 1 || len > 128) {
        PyErr_SetString(PyExc_ValueError, "a record id is 1-128 bytes");
        return NULL;
    }
    return PyLong_FromLongLong((long long)blake2b_id((const unsigned char *)buf, (size_t)len));
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_O, "A usage record's values, or None: validate it with the model."},
    {"digest", digest, METH_O, "dedupe.digest of a record id given as bytes (1-128)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_records",
                                    "The usage hot path's compiled record reader.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__records(void) { return PyModule_Create(&module); }
