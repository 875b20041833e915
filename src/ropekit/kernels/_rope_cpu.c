/* Native CPU RoPE: one pass over q and k per call, the pair rotation in fp32 registers.
 *
 * Why native: eager torch needs three or more passes for the "half" (NeoX) pairing and a widen and a
 * round pass for bf16/fp16; measured on a 2-vCPU VM that is 1.9x (fp32) and 3.2x (bf16) a same-bytes
 * copy. Here each element is read once and written once, so the rotation runs at the copy floor.
 *
 * Layout of what Python passes (ropekit/kernels/cpu_native.py checks it):
 *   x, o   rows x heads x head_dim, element strides (row, head), last dim contiguous; o may equal x.
 *   cos, sin  fp32 (table_len, half), contiguous; row p holds the angles of position p.
 *   pos    int64 (rows,) positions, or NULL for contiguous positions start + r.
 *   "half" pairs i <-> i + half (NeoX/HF); "interleaved" pairs 2i <-> 2i+1 (GPT-J).
 * fp32 math with one rounding to the storage dtype (round to nearest even, as torch rounds).
 * The functions take a row range so Python can split one call across threads (the GIL is released).
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
    int64_t xs_row, xs_head, os_row, os_head; /* element strides */
    int64_t heads;
    int copy_tail; /* out of place with partial rotary: the channels past rotary_dim pass through */
} Tensor;

typedef struct {
    Tensor t[RK_MAX_TENSORS];
    int n_tensors;
    int64_t head_dim, half;
    const float *cos, *sin;
    const int64_t *pos;
    int64_t start;
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

/* One kernel per storage type; the loops are written so GCC/clang vectorise them. */
#define RK_DEFINE_KERNEL(NAME, T, LD, ST)                                                            \
    RK_CLONES static void NAME(const Job *job, int64_t r0, int64_t r1) {                               \
        const int64_t half = job->half, hd = job->head_dim;                                            \
        const float sg = job->sign;                                                                    \
        for (int64_t r = r0; r < r1; ++r) {                                                            \
            const int64_t p = job->pos ? job->pos[r] : job->start + r;                                 \
            const float *c = job->cos + p * half, *s = job->sin + p * half;                            \
            for (int ti = 0; ti < job->n_tensors; ++ti) {                                              \
                const Tensor *t = &job->t[ti];                                                         \
                for (int64_t h = 0; h < t->heads; ++h) {                                               \
                    const T *xp = (const T *)t->x + r * t->xs_row + h * t->xs_head;                    \
                    T *op = (T *)t->o + r * t->os_row + h * t->os_head;                                \
                    if (job->interleaved) {                                                            \
                        RK_IVDEP for (int64_t i = 0; i < half; ++i) {                                  \
                            const float a = LD(xp, 2 * i), b = LD(xp, 2 * i + 1);                      \
                            const float cc = c[i], ss = sg * s[i];                                     \
                            ST(op, 2 * i, a * cc - b * ss);                                            \
                            ST(op, 2 * i + 1, b * cc + a * ss);                                        \
                        }                                                                              \
                    } else {                                                                           \
                        RK_IVDEP for (int64_t i = 0; i < half; ++i) {                                  \
                            const float a = LD(xp, i), b = LD(xp, i + half);                           \
                            const float cc = c[i], ss = sg * s[i];                                     \
                            ST(op, i, a * cc - b * ss);                                                \
                            ST(op, i + half, b * cc + a * ss);                                         \
                        }                                                                              \
                    }                                                                                  \
                    if (t->copy_tail)                                                                  \
                        memcpy(op + 2 * half, xp + 2 * half, (size_t)(hd - 2 * half) * sizeof(T));     \
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
    "rotate(tensors, dtype, head_dim, half, cos, sin, table_len, pos, start, interleaved, conj, r0, r1)\n"
    "Rotate rows [r0, r1) of up to two tensors; each of ``tensors`` is (x_ptr, o_ptr, xs_row, xs_head,\n"
    "os_row, os_head, heads, copy_tail). dtype: 0 fp32, 1 bf16, 2 fp16. pos: int64 pointer or 0.\n"
    "Positions outside [0, table_len) raise ValueError before any element is written.";

static PyObject *rotate(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *tensors;
    int dtype, interleaved, conj;
    Py_ssize_t head_dim, half, table_len, start, r0, r1;
    unsigned long long cos_ptr, sin_ptr, pos_ptr;
    if (!PyArg_ParseTuple(args, "O!innKKnKnppnn", &PyTuple_Type, &tensors, &dtype, &head_dim, &half, &cos_ptr,
                          &sin_ptr, &table_len, &pos_ptr, &start, &interleaved, &conj, &r0, &r1))
        return NULL;
    KernelFn fn = kernel_for(dtype);
    if (!fn) return PyErr_Format(PyExc_ValueError, "dtype code %d is not supported by this build", dtype);
    if (half < 1 || 2 * half > head_dim)
        return PyErr_Format(PyExc_ValueError, "half=%zd must be in [1, head_dim/2=%zd]", half, head_dim / 2);
    Py_ssize_t n = PyTuple_GET_SIZE(tensors);
    if (n < 1 || n > RK_MAX_TENSORS)
        return PyErr_Format(PyExc_ValueError, "between 1 and %d tensors, got %zd", RK_MAX_TENSORS, n);
    Job job;
    memset(&job, 0, sizeof job);
    for (Py_ssize_t i = 0; i < n; ++i) {
        unsigned long long xp, op;
        Py_ssize_t a, b, c, d, heads;
        int tail;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(tensors, i), "KKnnnnnp", &xp, &op, &a, &b, &c, &d, &heads, &tail))
            return NULL;
        job.t[i] = (Tensor){(const char *)(uintptr_t)xp, (char *)(uintptr_t)op, a, b, c, d, heads, tail};
    }
    job.n_tensors = (int)n;
    job.head_dim = head_dim;
    job.half = half;
    job.cos = (const float *)(uintptr_t)cos_ptr;
    job.sin = (const float *)(uintptr_t)sin_ptr;
    job.pos = (const int64_t *)(uintptr_t)pos_ptr;
    job.start = start;
    job.interleaved = interleaved;
    job.sign = conj ? -1.0f : 1.0f;
    /* Bounds first, so a bad position never leaves a half-rotated tensor behind. */
    int64_t bad = -1, bad_row = -1;
    Py_BEGIN_ALLOW_THREADS
    if (job.pos) {
        for (int64_t r = r0; r < r1; ++r)
            if (job.pos[r] < 0 || job.pos[r] >= table_len) { bad = job.pos[r]; bad_row = r; break; }
    } else if (r1 > r0 && (start + r0 < 0 || start + r1 > table_len)) {
        bad = start + r0 < 0 ? start + r0 : start + r1 - 1;
        bad_row = r0;
    }
    if (bad_row < 0) fn(&job, r0, r1);
    Py_END_ALLOW_THREADS
    if (bad_row >= 0)
        return PyErr_Format(PyExc_ValueError, "position %lld (row %lld) is outside the cos/sin table [0, %zd)",
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
