/* TARP's coverage count in one pass over the samples (float32, x86-64 with AVX2; optional).
 *
 * closer[b] += #{s : sum_d w[d] * (x[s, b, d] - r[b, d])^2 < t[b]}
 *
 * The torch expression of this count has to reduce over a tiny last dimension D, which no BLAS or torch
 * kernel does fast (priorfit.diagnostics.tarp measures ~1.1 ms at 1,000 x 200 x 10; this kernel ~0.35 ms).
 * Small D (1..4): a loop over b that the compiler vectorises, with D a compile-time constant. Larger D: each
 * posterior's D values are summed in one 8-lane register (masked tail), and eight posteriors' registers are
 * folded by a horizontal-add tree. Built by setuptools as an optional extension: without it, or on a CPU
 * without AVX2, priorfit uses the torch expression (same counts up to float32 rounding ties).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <stdint.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_KERNEL 1
#define TARGET __attribute__((target("avx2,fma")))

/* sum_d w[d] * (xs[d] - rs[d])^2 of one posterior, in order; inlined with a constant D, a loop over
   posteriors that calls it is what the compiler vectorises. */
TARGET static inline float distance_of(const float *xs, const float *rs, const float *w, int64_t D) {
    float distance = 0.f;
    for (int64_t d = 0; d < D; d++) {
        float v = xs[d] - rs[d];
        distance += w[d] * v * v;
    }
    return distance;
}

/* Returns 1 when some distance is NaN or infinite (a sample with NaN or inf). */
#define SMALL_D(DD)                                                                                        \
    TARGET static int count_d##DD(const float *x, const float *r, const float *w, const float *t,           \
                                  int64_t S, int64_t B, int32_t *closer) {                                   \
        int nonfinite = 0;                                                                                   \
        for (int64_t s = 0; s < S; s++) {                                                                    \
            const float *row = x + s * B * DD;                                                               \
            for (int64_t b = 0; b < B; b++) {                                                                \
                float distance = distance_of(row + b * DD, r + b * DD, w, DD);                               \
                nonfinite |= !(distance <= FLT_MAX);                                                         \
                closer[b] += distance < t[b];                                                                \
            }                                                                                                \
        }                                                                                                    \
        return nonfinite;                                                                                    \
    }
SMALL_D(1)
SMALL_D(2)
SMALL_D(3)
SMALL_D(4)

/* w * (x - r)^2 of one posterior's D values, summed chunk-wise into one 8-lane register. */
TARGET static inline __m256 weighted_squares(const float *xs, const float *rs, const float *w, int64_t D,
                                             __m256i tail) {
    __m256 sum = _mm256_setzero_ps();
    int64_t d = 0;
    for (; d + 8 <= D; d += 8) {
        __m256 v = _mm256_sub_ps(_mm256_loadu_ps(xs + d), _mm256_loadu_ps(rs + d));
        sum = _mm256_fmadd_ps(_mm256_mul_ps(v, v), _mm256_loadu_ps(w + d), sum);
    }
    if (d < D) { /* masked lanes are neither read nor counted */
        __m256 v = _mm256_sub_ps(_mm256_maskload_ps(xs + d, tail), _mm256_maskload_ps(rs + d, tail));
        sum = _mm256_fmadd_ps(_mm256_mul_ps(v, v), _mm256_maskload_ps(w + d, tail), sum);
    }
    return sum;
}

/* Lane k of the result: the sum of the eight lanes of v_k. */
TARGET static inline __m256 horizontal_sums(__m256 v0, __m256 v1, __m256 v2, __m256 v3, __m256 v4, __m256 v5,
                                            __m256 v6, __m256 v7) {
    __m256 h0 = _mm256_hadd_ps(v0, v1), h1 = _mm256_hadd_ps(v2, v3);
    __m256 h2 = _mm256_hadd_ps(v4, v5), h3 = _mm256_hadd_ps(v6, v7);
    __m256 g0 = _mm256_hadd_ps(h0, h1), g1 = _mm256_hadd_ps(h2, h3);
    return _mm256_add_ps(_mm256_permute2f128_ps(g0, g1, 0x20), _mm256_permute2f128_ps(g0, g1, 0x31));
}

TARGET static int count_wide(const float *x, const float *r, const float *w, const float *t, int64_t S,
                             int64_t B, int64_t D, int32_t *closer) {
    const __m256i tail = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(D % 8)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const __m256 largest = _mm256_set1_ps(FLT_MAX);
    const int64_t B8 = B - B % 8;
    __m256 nonfinite = _mm256_setzero_ps();
    int nonfinite_tail = 0;
    for (int64_t s = 0; s < S; s++) {
        const float *row = x + s * B * D;
        for (int64_t b = 0; b < B8; b += 8) {
            const float *xs = row + b * D, *rs = r + b * D;
            /* ask for the samples of the posteriors 128 ahead (16 groups): the hardware prefetcher alone runs
               behind this loop when the samples come from memory rather than cache (2.5x slower at D = 10);
               prefetching past the end of the array is harmless (a hint, it never faults) */
            for (int64_t line = 0; line < 8 * D; line += 16)
                _mm_prefetch((const char *)((uintptr_t)xs + 4 * (128 * D + line)), _MM_HINT_T0);
            __m256 distance = horizontal_sums(
                weighted_squares(xs, rs, w, D, tail), weighted_squares(xs + D, rs + D, w, D, tail),
                weighted_squares(xs + 2 * D, rs + 2 * D, w, D, tail), weighted_squares(xs + 3 * D, rs + 3 * D, w, D, tail),
                weighted_squares(xs + 4 * D, rs + 4 * D, w, D, tail), weighted_squares(xs + 5 * D, rs + 5 * D, w, D, tail),
                weighted_squares(xs + 6 * D, rs + 6 * D, w, D, tail), weighted_squares(xs + 7 * D, rs + 7 * D, w, D, tail));
            nonfinite = _mm256_or_ps(nonfinite, _mm256_cmp_ps(distance, largest, _CMP_NLE_UQ));
            __m256i is_closer = _mm256_castps_si256(_mm256_cmp_ps(distance, _mm256_loadu_ps(t + b), _CMP_LT_OQ));
            __m256i counts = _mm256_loadu_si256((const __m256i *)(closer + b));
            _mm256_storeu_si256((__m256i *)(closer + b), _mm256_sub_epi32(counts, is_closer)); /* true is -1 */
        }
        for (int64_t b = B8; b < B; b++) {
            float distance = distance_of(row + b * D, r + b * D, w, D);
            nonfinite_tail |= !(distance <= FLT_MAX);
            closer[b] += distance < t[b];
        }
    }
    return _mm256_movemask_ps(nonfinite) != 0 || nonfinite_tail;
}
#else
#define HAVE_KERNEL 0
#endif

PyDoc_STRVAR(count_closer_doc,
             "count_closer(samples, references, weights, truth_distance, S, B, D, closer) -> int\n\n"
             "Addresses of C-contiguous float32 buffers (S, B, D), (B, D), (D,), (B,) and int32 (B,); adds to\n"
             "closer[b] the samples closer to r[b] than the truth. Returns 1 on success, -1 when a distance is\n"
             "NaN or infinite, 0 when this CPU cannot run the kernel (no AVX2).");

static PyObject *count_closer(PyObject *self, PyObject *args) {
    unsigned long long x, r, w, t, closer;
    long long S, B, D;
    if (!PyArg_ParseTuple(args, "KKKKLLLK", &x, &r, &w, &t, &S, &B, &D, &closer)) return NULL;
    if (S < 0 || B < 0 || D < 1) {
        PyErr_SetString(PyExc_ValueError, "count_closer: need S >= 0, B >= 0, D >= 1");
        return NULL;
    }
#if HAVE_KERNEL
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return PyLong_FromLong(0);
    const float *xs = (const float *)(uintptr_t)x, *rs = (const float *)(uintptr_t)r;
    const float *ws = (const float *)(uintptr_t)w, *ts = (const float *)(uintptr_t)t;
    int32_t *cs = (int32_t *)(uintptr_t)closer;
    int nonfinite;
    Py_BEGIN_ALLOW_THREADS;
    switch (D) {
        case 1: nonfinite = count_d1(xs, rs, ws, ts, S, B, cs); break;
        case 2: nonfinite = count_d2(xs, rs, ws, ts, S, B, cs); break;
        case 3: nonfinite = count_d3(xs, rs, ws, ts, S, B, cs); break;
        case 4: nonfinite = count_d4(xs, rs, ws, ts, S, B, cs); break;
        default: nonfinite = count_wide(xs, rs, ws, ts, S, B, D, cs);
    }
    Py_END_ALLOW_THREADS;
    return PyLong_FromLong(nonfinite ? -1 : 1);
#else
    return PyLong_FromLong(0);
#endif
}

static PyMethodDef methods[] = {
    {"count_closer", count_closer, METH_VARARGS, count_closer_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_tarp_kernel", "TARP's coverage count (AVX2).", -1,
                                    methods};

PyMODINIT_FUNC PyInit__tarp_kernel(void) { return PyModule_Create(&module); }
