/* Native CPU RoPE: one pass over q and k per call, the pair rotation in fp32 registers.
 *
 * Why native: eager torch needs three or more passes for the "half" (NeoX) pairing and a widen and a
 * round pass for bf16/fp16; measured on a 2-vCPU VM that is 1.9x (fp32) and 3.2x (bf16) a same-bytes
 * copy. Here each element is read once and written once, so the rotation runs at the copy floor, and
 * every position mode is resolved here so a call costs a few microseconds of Python.
 *
 * What Python passes (ropekit/kernels/cpu_native.py builds it):
 *   rows     batch x seqlen tokens, row r = (b, s) = (r / seqlen, r % seqlen); packed input: batch 1.
 *   x, o     element strides (batch, seq, head), last dim contiguous; o may equal x (in place).
 *   cos,sin  fp32 (table_len, half), contiguous; row p holds the angles of position p.
 *   position of (b, s), by mode: 0 start + s + offs[b] (offs optional); 1 pos[b * pos_sb + s * pos_ss];
 *            2 packed, s in sequence i (cu[i] <= s < cu[i+1]): start-or-offs[i] + s - cu[i].
 *   "half" pairs i <-> i + half (NeoX/HF); "interleaved" pairs 2i <-> 2i+1 (GPT-J).
 * fp32 math with one rounding to the storage dtype (round to nearest even, as torch rounds).
 * Every position is checked against the table before any element is written; the functions take a
 * row range so Python can split one call across threads (the GIL is released).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Build one copy per ISA level and pick at load time (GNU ifunc), so the wheel stays portable. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define RK_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define RK_CLONES
#endif

/* In place, o[i] is stored after x[i] and x[i + half] are loaded in the same iteration and never read
 * again: no loop-carried dependence, which the compiler cannot prove on its own. */
#if defined(__clang__)
#define RK_IVDEP _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define RK_IVDEP _Pragma("GCC ivdep")
#else
#define RK_IVDEP
#endif

#define RK_MAX_TENSORS 2

typedef struct {
    const char *x;
    char *o;
    int64_t xs_b, xs_s, xs_h, os_b, os_s, os_h; /* element strides */
    int64_t heads;
    int copy_tail; /* out of place with partial rotary: the channels past rotary_dim pass through */
} Tensor;

typedef struct {
    int mode; /* 0 contiguous from start (+ offs[b]), 1 explicit positions, 2 packed sequences */
    int64_t seqlen, start;
    const int64_t *offs;        /* mode 0: per batch row, mode 2: per sequence; may be NULL */
    const int64_t *pos;         /* mode 1 */
    int64_t pos_sb, pos_ss;     /* mode 1 element strides (pos_sb 0 for one (seqlen,) row shared by all) */
    const int64_t *cu;          /* mode 2: (n_seqs + 1,) cumulative lengths */
    int64_t n_seqs;
} Positions;

/* Walks rows in order and yields each row's position; mode 2 keeps the current sequence. */
typedef struct {
    const Positions *ps;
    int64_t seq;
} PosCursor;

static inline void cursor_init(PosCursor *c, const Positions *ps, int64_t r0) {
    c->ps = ps;
    c->seq = 0;
    if (ps->mode == 2) { /* last sequence starting at or before r0 (binary search; cu is validated) */
        int64_t lo = 0, hi = ps->n_seqs - 1;
        while (lo < hi) {
            const int64_t mid = (lo + hi + 1) / 2;
            if (ps->cu[mid] <= r0) lo = mid; else hi = mid - 1;
        }
        c->seq = lo;
    }
}

/* Position of row r = (b, s); mode 2 (packed: b = 0, s = r) advances the current sequence. */
static inline int64_t cursor_pos(PosCursor *c, int64_t r, int64_t b, int64_t s) {
    const Positions *ps = c->ps;
    switch (ps->mode) {
    case 0: return ps->start + s + (ps->offs ? ps->offs[b] : 0);
    case 1: return ps->pos[b * ps->pos_sb + s * ps->pos_ss];
    default:
        while (c->seq + 1 < ps->n_seqs && ps->cu[c->seq + 1] <= r) ++c->seq;
        return (ps->offs ? ps->offs[c->seq] : ps->start) + r - ps->cu[c->seq];
    }
}

typedef struct {
    Tensor t[RK_MAX_TENSORS];
    int n_tensors;
    int64_t head_dim, half;
    const float *cos, *sin;
    Positions ps;
    int interleaved;
    float sign; /* +1 forward, -1 backward (the transpose of a rotation is the opposite rotation) */
} Job;

static inline float ld_f32(const float *p, int64_t i) { return p[i]; }
static inline void st_f32(float *p, int64_t i, float v) { p[i] = v; }

static inline float ld_bf16(const uint16_t *p, int64_t i) {
    uint32_t u = (uint32_t)p[i] << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline void st_bf16(uint16_t *p, int64_t i, float v) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    /* round to nearest even; NaN becomes torch's canonical 0x7FC0 */
    uint32_t r = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
    p[i] = ((u & 0x7FFFFFFFu) > 0x7F800000u) ? (uint16_t)0x7FC0u : (uint16_t)r;
}

/* fp16 <-> fp32 with integer ops only: compilers vectorise these, while _Float16 conversions stay scalar
 * (or become library calls) on x86 without AVX512-FP16. */
static inline float ld_f16(const uint16_t *p, int64_t i) {
    const uint32_t h = p[i], em = h & 0x7FFFu;
    const uint32_t normal = (em << 13) + 0x38000000u;      /* rebias the exponent: (127 - 15) << 23 */
    const uint32_t infnan = (em << 13) | 0x7F800000u;
    /* Subnormals: 2^-14 * (1 + m/1024) - 2^-14 = m * 2^-24, exact, with no fp32 denormal involved (so
     * it holds under flush-to-zero too). */
    uint32_t u = 0x38800000u | (em << 13);
    float f;
    memcpy(&f, &u, sizeof f);
    f -= 0x1p-14f;
    memcpy(&u, &f, sizeof u);
    u = (em >= 0x7C00u) ? infnan : (em < 0x0400u ? u : normal);
    u |= (h & 0x8000u) << 16;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline void st_f16(uint16_t *p, int64_t i, float v) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    const uint32_t sign = (u >> 16) & 0x8000u;
    u &= 0x7FFFFFFFu;
    /* Normal results: rebias the exponent, round to nearest even on the 13 dropped bits. */
    const uint32_t normal = (u + 0xC8000FFFu + ((u >> 13) & 1u)) >> 13; /* 0xC8000000 = (15-127) << 23 */
    /* Results below 2^-14 (fp16 subnormals, zero): adding 0.5 aligns the kept bits at the bottom of the
     * fp32 mantissa, and the fp32 addition itself rounds to nearest even. */
    float a;
    memcpy(&a, &u, sizeof a);
    a += 0.5f;
    uint32_t sub;
    memcpy(&sub, &a, sizeof sub);
    sub -= 0x3F000000u; /* the bits of 0.5f */
    uint32_t r = (u < 0x38800000u) ? sub : normal;              /* 0x38800000 = 2^-14 */
    r = (u >= 0x47800000u) ? 0x7C00u : r;                       /* >= 2^16 overflows to inf */
    r = (u > 0x7F800000u) ? 0x7E00u : r;                        /* NaN stays (quiet) NaN */
    p[i] = (uint16_t)(r | sign);
}

/* One head: rotate HALF pairs of xp into op. */
#define RK_ROT_HEAD(LD, ST, HALF, INTERLEAVED)                                                       \
    if (INTERLEAVED) {                                                                                 \
        RK_IVDEP for (int64_t i = 0; i < (HALF); ++i) {                                                \
            const float a = LD(xp, 2 * i), b = LD(xp, 2 * i + 1), cc = c[i], ss = sg * s[i];           \
            ST(op, 2 * i, a * cc - b * ss);                                                            \
            ST(op, 2 * i + 1, b * cc + a * ss);                                                        \
        }                                                                                              \
    } else {                                                                                           \
        RK_IVDEP for (int64_t i = 0; i < (HALF); ++i) {                                                \
            const float a = LD(xp, i), b = LD(xp, i + (HALF)), cc = c[i], ss = sg * s[i];              \
            ST(op, i, a * cc - b * ss);                                                                \
            ST(op, i + (HALF), b * cc + a * ss);                                                       \
        }                                                                                              \
    }

/* All heads of one row. head_dim 128 (half 64) gets its own copy with the trip count known at compile
 * time: no remainder or peeling code per head, which is most of the cost when the data is in cache. */
#define RK_ROT_ROW(T, LD, ST, HALF)                                                                    \
    for (int64_t h = 0; h < t->heads; ++h) {                                                           \
        const T *xp = xr + h * t->xs_h;                                                                \
        T *op = orow + h * t->os_h;                                                                    \
        RK_ROT_HEAD(LD, ST, HALF, job->interleaved)                                                    \
        if (t->copy_tail) memcpy(op + 2 * (HALF), xp + 2 * (HALF), (size_t)(hd - 2 * (HALF)) * sizeof(T)); \
    }

/* One kernel per storage type; the loops are written so GCC/clang vectorise them. */
#define RK_DEFINE_KERNEL(NAME, T, LD, ST)                                                              \
    RK_CLONES static void NAME(const Job *job, int64_t r0, int64_t r1) {                               \
        const int64_t half = job->half, hd = job->head_dim;                                            \
        const float sg = job->sign;                                                                    \
        PosCursor cur;                                                                                 \
        cursor_init(&cur, &job->ps, r0);                                                               \
        for (int64_t r = r0; r < r1; ++r) {                                                            \
            const int64_t rb = r / job->ps.seqlen, rs = r - rb * job->ps.seqlen;                       \
            const int64_t p = cursor_pos(&cur, r, rb, rs);                                             \
            const float *c = job->cos + p * half, *s = job->sin + p * half;                            \
            for (int ti = 0; ti < job->n_tensors; ++ti) {                                              \
                const Tensor *t = &job->t[ti];                                                         \
                const T *xr = (const T *)t->x + rb * t->xs_b + rs * t->xs_s;                           \
                T *orow = (T *)t->o + rb * t->os_b + rs * t->os_s;                                     \
                if (half == 64) {                                                                      \
                    RK_ROT_ROW(T, LD, ST, 64)                                                          \
                } else {                                                                               \
                    RK_ROT_ROW(T, LD, ST, half)                                                        \
                }                                                                                      \
            }                                                                                          \
        }                                                                                              \
    }

RK_DEFINE_KERNEL(rope_f32, float, ld_f32, st_f32)
RK_DEFINE_KERNEL(rope_bf16, uint16_t, ld_bf16, st_bf16)
RK_DEFINE_KERNEL(rope_f16, uint16_t, ld_f16, st_f16)

typedef void (*KernelFn)(const Job *, int64_t, int64_t);

static KernelFn kernel_for(int dtype) {
    switch (dtype) {
    case 0: return rope_f32;
    case 1: return rope_bf16;
    case 2: return rope_f16;
    default: return NULL;
    }
}

static const char rotate_doc[] =
    "rotate(tensors, dtype, head_dim, half, cos, sin, table_len, interleaved, conj, mode, seqlen, start, offs,\n"
    "       pos, pos_sb, pos_ss, cu, n_seqs, r0, r1, compute)\n"
    "Rotate rows [r0, r1) of up to two tensors; each of ``tensors`` is (x_ptr, o_ptr, xs_b, xs_s, xs_h, os_b,\n"
    "os_s, os_h, heads, copy_tail). dtype: 0 fp32, 1 bf16, 2 fp16. Pointers are ints (0 for none).\n"
    "Every position of the range is checked first (ValueError, nothing written); compute=False only checks.";

static PyObject *rotate(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *tensors;
    int dtype, interleaved, conj, mode, compute;
    Py_ssize_t head_dim, half, table_len, seqlen, start, pos_sb, pos_ss, n_seqs, r0, r1;
    unsigned long long cos_ptr, sin_ptr, offs_ptr, pos_ptr, cu_ptr;
    if (!PyArg_ParseTuple(args, "O!innKKnppinnKKnnKnnnp", &PyTuple_Type, &tensors, &dtype, &head_dim, &half,
                          &cos_ptr, &sin_ptr, &table_len, &interleaved, &conj, &mode, &seqlen, &start, &offs_ptr,
                          &pos_ptr, &pos_sb, &pos_ss, &cu_ptr, &n_seqs, &r0, &r1, &compute))
        return NULL;
    KernelFn fn = kernel_for(dtype);
    if (!fn) return PyErr_Format(PyExc_ValueError, "dtype code %d is not supported", dtype);
    if (half < 1 || 2 * half > head_dim)
        return PyErr_Format(PyExc_ValueError, "half=%zd must be in [1, head_dim/2=%zd]", half, head_dim / 2);
    if (mode < 0 || mode > 2 || seqlen < 1 || r0 < 0 || r1 < r0 || (mode == 1 && !pos_ptr) ||
        (mode == 2 && (!cu_ptr || n_seqs < 1)))
        return PyErr_Format(PyExc_ValueError, "inconsistent position arguments (mode %d)", mode);
    Py_ssize_t n = PyTuple_GET_SIZE(tensors);
    if (n < 1 || n > RK_MAX_TENSORS)
        return PyErr_Format(PyExc_ValueError, "between 1 and %d tensors, got %zd", RK_MAX_TENSORS, n);
    Job job;
    memset(&job, 0, sizeof job);
    for (Py_ssize_t i = 0; i < n; ++i) {
        unsigned long long xp, op;
        Py_ssize_t sb, ss, sh, ob, os, oh, heads;
        int tail;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(tensors, i), "KKnnnnnnnp", &xp, &op, &sb, &ss, &sh, &ob, &os, &oh,
                              &heads, &tail))
            return NULL;
        job.t[i] = (Tensor){(const char *)(uintptr_t)xp, (char *)(uintptr_t)op, sb, ss, sh, ob, os, oh, heads, tail};
    }
    job.n_tensors = (int)n;
    job.head_dim = head_dim;
    job.half = half;
    job.cos = (const float *)(uintptr_t)cos_ptr;
    job.sin = (const float *)(uintptr_t)sin_ptr;
    job.ps = (Positions){mode, seqlen, start, (const int64_t *)(uintptr_t)offs_ptr, (const int64_t *)(uintptr_t)pos_ptr,
                         pos_sb, pos_ss, (const int64_t *)(uintptr_t)cu_ptr, n_seqs};
    job.interleaved = interleaved;
    job.sign = conj ? -1.0f : 1.0f;
    int64_t bad = 0, bad_row = -1;
    int bad_cu = 0;
    Py_BEGIN_ALLOW_THREADS
    if (mode == 2) { /* malformed cu_seqlens must not steer a read or write out of bounds */
        bad_cu = job.ps.cu[0] != 0 || job.ps.cu[n_seqs] != seqlen;
        for (int64_t i = 0; i < n_seqs && !bad_cu; ++i) bad_cu = job.ps.cu[i + 1] < job.ps.cu[i];
    }
    if (!bad_cu) {
        PosCursor cur;
        cursor_init(&cur, &job.ps, r0);
        for (int64_t r = r0; r < r1; ++r) {
            const int64_t b = r / seqlen, p = cursor_pos(&cur, r, b, r - b * seqlen);
            if (p < 0 || p >= table_len) { bad = p; bad_row = r; break; }
        }
        if (bad_row < 0 && compute) fn(&job, r0, r1);
    }
    Py_END_ALLOW_THREADS
    if (bad_cu)
        return PyErr_Format(PyExc_ValueError, "cu_seqlens must start at 0, be non-decreasing and end at %zd", seqlen);
    if (bad_row >= 0)
        return PyErr_Format(PyExc_ValueError, "position %lld (token %lld) is outside the cos/sin table [0, %zd)",
                            (long long)bad, (long long)bad_row, table_len);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"rotate", rotate, METH_VARARGS, rotate_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_rope_cpu",
    .m_doc = "Native CPU RoPE kernels (see ropekit.kernels.cpu_native).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__rope_cpu(void) {
    return PyModule_Create(&module);
}
