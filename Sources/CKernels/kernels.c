// Vectorised pointwise kernels for the LSTM/GRU core (AVX2 + FMA, see Package.swift flags).
// Every loop handles its tail with masked loads/stores, so the tail goes through exactly the
// same arithmetic as the body: results do not depend on where a row ends.
#include "ckernels.h"
#include <immintrin.h>
#include <math.h>
#include <time.h>
#include <stdlib.h>

static inline __m256i tail_mask(long rem) {
    // lanes [0, rem) enabled; rem in 1..7
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)rem), idx);
}

// Loads and stores of 8 floats, masked only for a row's tail: a masked store is microcoded and
// several times slower on AMD cores, and `full` is a constant once these are inlined.
static inline __attribute__((always_inline)) __m256 load8(const float *p, __m256i m, int full) {
    return full ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, m);
}
static inline __attribute__((always_inline)) void store8(float *p, __m256i m, __m256 v, int full) {
    if (full) _mm256_storeu_ps(p, v); else _mm256_maskstore_ps(p, m, v);
}

// exp(x) for x clamped to [-87, 88]: x = k ln2 + r, |r| <= ln2/2, degree-7 Taylor polynomial
// (truncation ~5e-9 relative), scaled by 2^k built directly in the exponent bits.
static inline __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

static inline __m256 sigmoid8(__m256 x) {
    const __m256 one = _mm256_set1_ps(1.0f);
    return _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

// tanh(|x|) = (1 - e)/(1 + e), e = exp(-2|x|); below 0.3 that loses relative precision
// (1 - e cancels), so small arguments use the odd Taylor series up to x^9 (error < 5e-8 rel).
static inline __m256 tanh8(__m256 x) {
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 signbit = _mm256_set1_ps(-0.0f);
    __m256 a = _mm256_andnot_ps(signbit, x);
    __m256 e = exp8(_mm256_mul_ps(a, _mm256_set1_ps(-2.0f)));
    __m256 big = _mm256_div_ps(_mm256_sub_ps(one, e), _mm256_add_ps(one, e));
    __m256 a2 = _mm256_mul_ps(a, a);
    __m256 s = _mm256_set1_ps(62.0f / 2835.0f);
    s = _mm256_fmadd_ps(s, a2, _mm256_set1_ps(-17.0f / 315.0f));
    s = _mm256_fmadd_ps(s, a2, _mm256_set1_ps(2.0f / 15.0f));
    s = _mm256_fmadd_ps(s, a2, _mm256_set1_ps(-1.0f / 3.0f));
    s = _mm256_mul_ps(s, a2);
    __m256 small = _mm256_fmadd_ps(s, a, a);
    __m256 useSmall = _mm256_cmp_ps(a, _mm256_set1_ps(0.3f), _CMP_LT_OQ);
    __m256 t = _mm256_blendv_ps(big, small, useSmall);
    return _mm256_or_ps(t, _mm256_and_ps(x, signbit));
}

// 16-lane AVX-512 forms of exp8/sigmoid8/tanh8, for CPUs that have it (chosen at run time):
// the same operations lane for lane.
#define AVX512 __attribute__((target("avx512f,avx512dq")))
AVX512 static inline __m512 exp16(__m512 x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(88.0f));
    __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(k, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(k), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
}
AVX512 static inline __m512 sigmoid16(__m512 x) {
    const __m512 one = _mm512_set1_ps(1.0f);
    return _mm512_div_ps(one, _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), x))));
}
AVX512 static inline __m512 tanh16(__m512 x) {
    const __m512 one = _mm512_set1_ps(1.0f);
    const __m512 signbit = _mm512_set1_ps(-0.0f);
    __m512 a = _mm512_andnot_ps(signbit, x);
    __m512 e = exp16(_mm512_mul_ps(a, _mm512_set1_ps(-2.0f)));
    __m512 big = _mm512_div_ps(_mm512_sub_ps(one, e), _mm512_add_ps(one, e));
    __m512 a2 = _mm512_mul_ps(a, a);
    __m512 s = _mm512_set1_ps(62.0f / 2835.0f);
    s = _mm512_fmadd_ps(s, a2, _mm512_set1_ps(-17.0f / 315.0f));
    s = _mm512_fmadd_ps(s, a2, _mm512_set1_ps(2.0f / 15.0f));
    s = _mm512_fmadd_ps(s, a2, _mm512_set1_ps(-1.0f / 3.0f));
    s = _mm512_mul_ps(s, a2);
    __m512 small = _mm512_fmadd_ps(s, a, a);
    __mmask16 useSmall = _mm512_cmp_ps_mask(a, _mm512_set1_ps(0.3f), _CMP_LT_OQ);
    __m512 t = _mm512_mask_blend_ps(useSmall, big, small);
    return _mm512_or_ps(t, _mm512_and_ps(x, signbit));
}

static int has_avx512(void);

void fk_sigmoid(float *x, long n) {
    long i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, sigmoid8(_mm256_loadu_ps(x + i)));
    if (i < n) {
        __m256i m = tail_mask(n - i);
        _mm256_maskstore_ps(x + i, m, sigmoid8(_mm256_maskload_ps(x + i, m)));
    }
}

void fk_tanh(float *x, long n) {
    long i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, tanh8(_mm256_loadu_ps(x + i)));
    if (i < n) {
        __m256i m = tail_mask(n - i);
        _mm256_maskstore_ps(x + i, m, tanh8(_mm256_maskload_ps(x + i, m)));
    }
}

// One 8-lane slice of the LSTM state update, the gates already activated in z (mask selects
// active lanes; all on in the body).
static inline __attribute__((always_inline)) void lstm_fwd8(
    const float *z, long H, long j, const float *cp, float *c, float *tc, float *h, __m256i m, int full) {
    __m256 i = load8(z + j, m, full);
    __m256 f = load8(z + H + j, m, full);
    __m256 g = load8(z + 2 * H + j, m, full);
    __m256 o = load8(z + 3 * H + j, m, full);
    __m256 cv = _mm256_mul_ps(i, g);
    if (cp) cv = _mm256_fmadd_ps(f, load8(cp + j, m, full), cv);
    __m256 t = tanh8(cv);
    store8(c + j, m, cv, full);
    store8(tc + j, m, t, full);
    store8(h + j, m, _mm256_mul_ps(o, t), full);
}

// lstm_fwd8 with 16 lanes (AVX-512; masked tail).
AVX512 static inline void lstm_fwd16(float *z, long H, long j, const float *cp, float *c, float *tc,
                                     float *h, __mmask16 m) {
    __m512 i = sigmoid16(_mm512_maskz_loadu_ps(m, z + j));
    __m512 f = sigmoid16(_mm512_maskz_loadu_ps(m, z + H + j));
    __m512 g = tanh16(_mm512_maskz_loadu_ps(m, z + 2 * H + j));
    __m512 o = sigmoid16(_mm512_maskz_loadu_ps(m, z + 3 * H + j));
    __m512 cv = _mm512_mul_ps(i, g);
    if (cp) cv = _mm512_fmadd_ps(f, _mm512_maskz_loadu_ps(m, cp + j), cv);
    __m512 t = tanh16(cv);
    _mm512_mask_storeu_ps(z + j, m, i);
    _mm512_mask_storeu_ps(z + H + j, m, f);
    _mm512_mask_storeu_ps(z + 2 * H + j, m, g);
    _mm512_mask_storeu_ps(z + 3 * H + j, m, o);
    _mm512_mask_storeu_ps(c + j, m, cv);
    _mm512_mask_storeu_ps(tc + j, m, t);
    _mm512_mask_storeu_ps(h + j, m, _mm512_mul_ps(o, t));
}

AVX512 static void lstm_cell_forward16(long B, long H, float *z, const float *c_prev, float *c,
                                       float *tanh_c, float *h) {
    for (long b = 0; b < B; b++) {
        float *zr = z + b * 4 * H;
        const float *cp = c_prev ? c_prev + b * H : 0;
        float *cr = c + b * H, *tr = tanh_c + b * H, *hr = h + b * H;
        for (long j = 0; j < H; j += 16) {
            __mmask16 m = H - j >= 16 ? 0xFFFF : (__mmask16)((1u << (H - j)) - 1);
            lstm_fwd16(zr, H, j, cp, cr, tr, hr, m);
        }
    }
}

void fk_lstm_cell_forward(long B, long H, float *z, const float *c_prev, float *c,
                          float *tanh_c, float *h) {
    if (has_avx512()) { lstm_cell_forward16(B, H, z, c_prev, c, tanh_c, h); return; }
    const __m256i all = _mm256_set1_epi32(-1);
    for (long b = 0; b < B; b++) {
        float *zr = z + b * 4 * H;
        const float *cp = c_prev ? c_prev + b * H : 0;
        float *cr = c + b * H, *tr = tanh_c + b * H, *hr = h + b * H;
        // Two passes, the gates first: one pass with all four activations and the state update
        // in flight keeps too many registers live for AVX2's 16 (a quarter slower at H = 64 on
        // Zen 3). The values are the same, lane by lane.
        fk_sigmoid(zr, 2 * H);
        fk_tanh(zr + 2 * H, H);
        fk_sigmoid(zr + 3 * H, H);
        long j = 0;
        for (; j + 8 <= H; j += 8) lstm_fwd8(zr, H, j, cp, cr, tr, hr, all, 1);
        if (j < H) lstm_fwd8(zr, H, j, cp, cr, tr, hr, tail_mask(H - j), 0);
    }
}

static inline __attribute__((always_inline)) void lstm_bwd8(
    const float *gr, long H, long j, const float *cp, const float *tc, const float *dh, float *dc,
    float *dz, __m256i m, int full) {
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 i = load8(gr + j, m, full);
    __m256 f = load8(gr + H + j, m, full);
    __m256 g = load8(gr + 2 * H + j, m, full);
    __m256 o = load8(gr + 3 * H + j, m, full);
    __m256 t = load8(tc + j, m, full);
    __m256 d = load8(dh + j, m, full);
    // dc_t = dc_{t+1} * f_{t+1} (already folded into dc) + dh * o * (1 - tanh(c)^2)
    __m256 dcv = _mm256_fmadd_ps(_mm256_mul_ps(d, o), _mm256_fnmadd_ps(t, t, one),
                                 load8(dc + j, m, full));
    __m256 dO = _mm256_mul_ps(d, t);
    __m256 dI = _mm256_mul_ps(dcv, g);
    __m256 dG = _mm256_mul_ps(dcv, i);
    __m256 dF = cp ? _mm256_mul_ps(dcv, load8(cp + j, m, full)) : _mm256_setzero_ps();
    store8(dc + j, m, _mm256_mul_ps(dcv, f), full);
    store8(dz + j, m, _mm256_mul_ps(dI, _mm256_mul_ps(i, _mm256_sub_ps(one, i))), full);
    store8(dz + H + j, m, _mm256_mul_ps(dF, _mm256_mul_ps(f, _mm256_sub_ps(one, f))), full);
    store8(dz + 2 * H + j, m, _mm256_mul_ps(dG, _mm256_fnmadd_ps(g, g, one)), full);
    store8(dz + 3 * H + j, m, _mm256_mul_ps(dO, _mm256_mul_ps(o, _mm256_sub_ps(one, o))), full);
}

void fk_lstm_cell_backward(long B, long H, const float *gates, const float *c_prev,
                           const float *tanh_c, const float *dh, float *dc, float *dz) {
    const __m256i all = _mm256_set1_epi32(-1);
    for (long b = 0; b < B; b++) {
        const float *gr = gates + b * 4 * H;
        const float *cp = c_prev ? c_prev + b * H : 0;
        const float *tr = tanh_c + b * H, *dhr = dh + b * H;
        float *dcr = dc + b * H, *dzr = dz + b * 4 * H;
        long j = 0;
        for (; j + 8 <= H; j += 8) lstm_bwd8(gr, H, j, cp, tr, dhr, dcr, dzr, all, 1);
        if (j < H) lstm_bwd8(gr, H, j, cp, tr, dhr, dcr, dzr, tail_mask(H - j), 0);
    }
}

// Wb is W^T in 64-column panels: panel b holds columns [64b, 64b + w_b) for all K rows,
// contiguous ([K][w_b], w_b = min(64, N - 64b)). Each panel is one linear stream (16 KB for
// K = 64), which the prefetchers follow far better than a 1 KB-strided walk over W^T.
// 8 accumulators (64 columns) keep both FMA ports busy.
void fk_gemv_t(long K, long N, const float *Wb, const float *x, float *y) {
    long n0 = 0;
    const float *w = Wb;
    for (; n0 + 64 <= N; n0 += 64) {
        __m256 a0 = _mm256_loadu_ps(y + n0), a1 = _mm256_loadu_ps(y + n0 + 8);
        __m256 a2 = _mm256_loadu_ps(y + n0 + 16), a3 = _mm256_loadu_ps(y + n0 + 24);
        __m256 a4 = _mm256_loadu_ps(y + n0 + 32), a5 = _mm256_loadu_ps(y + n0 + 40);
        __m256 a6 = _mm256_loadu_ps(y + n0 + 48), a7 = _mm256_loadu_ps(y + n0 + 56);
        for (long k = 0; k < K; k++, w += 64) {
            __m256 xb = _mm256_broadcast_ss(x + k);
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w), xb, a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + 8), xb, a1);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + 16), xb, a2);
            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + 24), xb, a3);
            a4 = _mm256_fmadd_ps(_mm256_loadu_ps(w + 32), xb, a4);
            a5 = _mm256_fmadd_ps(_mm256_loadu_ps(w + 40), xb, a5);
            a6 = _mm256_fmadd_ps(_mm256_loadu_ps(w + 48), xb, a6);
            a7 = _mm256_fmadd_ps(_mm256_loadu_ps(w + 56), xb, a7);
        }
        _mm256_storeu_ps(y + n0, a0); _mm256_storeu_ps(y + n0 + 8, a1);
        _mm256_storeu_ps(y + n0 + 16, a2); _mm256_storeu_ps(y + n0 + 24, a3);
        _mm256_storeu_ps(y + n0 + 32, a4); _mm256_storeu_ps(y + n0 + 40, a5);
        _mm256_storeu_ps(y + n0 + 48, a6); _mm256_storeu_ps(y + n0 + 56, a7);
    }
    long wl = N - n0;  // last, narrower panel: [K][wl]
    for (long j = 0; j < wl; j += 8) {
        __m256i m = wl - j >= 8 ? _mm256_set1_epi32(-1) : tail_mask(wl - j);
        __m256 a = _mm256_maskload_ps(y + n0 + j, m);
        for (long k = 0; k < K; k++)
            a = _mm256_fmadd_ps(_mm256_maskload_ps(w + k * wl + j, m), _mm256_broadcast_ss(x + k), a);
        _mm256_maskstore_ps(y + n0 + j, m, a);
    }
}

// Four rows x 16 columns of fk_gemm_rows; `full` (16 columns, no mask) folds when inlined.
static inline __attribute__((always_inline)) void gemm_rows4x16(
    long K, long pw, const float *P, long c0, const float *x, long ldx, float *y, long ldy,
    __m256i m0, __m256i m1, int full) {
    float *y0 = y, *y1 = y0 + ldy, *y2 = y1 + ldy, *y3 = y2 + ldy;
    const float *x0 = x, *x1 = x0 + ldx, *x2 = x1 + ldx, *x3 = x2 + ldx;
    __m256 a00 = load8(y0, m0, full), a01 = load8(y0 + 8, m1, full);
    __m256 a10 = load8(y1, m0, full), a11 = load8(y1 + 8, m1, full);
    __m256 a20 = load8(y2, m0, full), a21 = load8(y2 + 8, m1, full);
    __m256 a30 = load8(y3, m0, full), a31 = load8(y3 + 8, m1, full);
    for (long k = 0; k < K; k++) {
        const float *w = P + k * pw + c0;
        __m256 w0 = load8(w, m0, full), w1 = load8(w + 8, m1, full);
        __m256 b = _mm256_broadcast_ss(x0 + k);
        a00 = _mm256_fmadd_ps(w0, b, a00); a01 = _mm256_fmadd_ps(w1, b, a01);
        b = _mm256_broadcast_ss(x1 + k);
        a10 = _mm256_fmadd_ps(w0, b, a10); a11 = _mm256_fmadd_ps(w1, b, a11);
        b = _mm256_broadcast_ss(x2 + k);
        a20 = _mm256_fmadd_ps(w0, b, a20); a21 = _mm256_fmadd_ps(w1, b, a21);
        b = _mm256_broadcast_ss(x3 + k);
        a30 = _mm256_fmadd_ps(w0, b, a30); a31 = _mm256_fmadd_ps(w1, b, a31);
    }
    store8(y0, m0, a00, full); store8(y0 + 8, m1, a01, full);
    store8(y1, m0, a10, full); store8(y1 + 8, m1, a11, full);
    store8(y2, m0, a20, full); store8(y2 + 8, m1, a21, full);
    store8(y3, m0, a30, full); store8(y3 + 8, m1, a31, full);
}

// AVX-512 version of fk_gemm_rows for CPUs that have it (chosen at run time; the build targets
// AVX2), for groups of 8 rows (M a multiple of 8): 8 rows x 32 columns per tile, 16
// accumulators, masked columns at a panel's edge. Same order over k per element as the AVX2
// path, so the results are the same.
__attribute__((target("avx512f"))) static void gemm_rows_avx512(
    long M, long K, long N, const float *Wb, const float *x, long ldx, float *y, long ldy) {
    for (long n0 = 0; n0 < N; n0 += 64) {
        const long pw = N - n0 < 64 ? N - n0 : 64;
        const float *P = Wb + n0 * K;
        for (long c0 = 0; c0 < pw; c0 += 32) {
            const long cols = pw - c0 < 32 ? pw - c0 : 32;
            const __mmask16 k0 = cols >= 16 ? 0xFFFF : (__mmask16)((1u << cols) - 1);
            const __mmask16 k1 = cols >= 32 ? 0xFFFF : cols > 16 ? (__mmask16)((1u << (cols - 16)) - 1) : 0;
            for (long r = 0; r + 8 <= M; r += 8) {
                float *yr = y + r * ldy + n0 + c0;
                const float *xr = x + r * ldx;
                __m512 a[8][2];
                for (int i = 0; i < 8; i++) {
                    a[i][0] = _mm512_maskz_loadu_ps(k0, yr + i * ldy);
                    a[i][1] = _mm512_maskz_loadu_ps(k1, yr + i * ldy + 16);
                }
                for (long k = 0; k < K; k++) {
                    const float *w = P + k * pw + c0;
                    __m512 w0 = _mm512_maskz_loadu_ps(k0, w), w1 = _mm512_maskz_loadu_ps(k1, w + 16);
                    for (int i = 0; i < 8; i++) {
                        __m512 b = _mm512_set1_ps(xr[i * ldx + k]);
                        a[i][0] = _mm512_fmadd_ps(w0, b, a[i][0]);
                        a[i][1] = _mm512_fmadd_ps(w1, b, a[i][1]);
                    }
                }
                for (int i = 0; i < 8; i++) {
                    _mm512_mask_storeu_ps(yr + i * ldy, k0, a[i][0]);
                    _mm512_mask_storeu_ps(yr + i * ldy + 16, k1, a[i][1]);
                }
            }
        }
    }
}

static int has_avx512(void) {
    // FORECASTD_NO_AVX512 (any value) keeps the AVX2 paths: the test script runs the numerical
    // tests both ways on CPUs that have AVX-512.
    static int cached = -1;
    if (cached < 0) cached = __builtin_cpu_supports("avx512f") && !getenv("FORECASTD_NO_AVX512") ? 1 : 0;
    return cached;
}

void fk_gemm_rows(long M, long K, long N, const float *Wb, const float *x, long ldx, float *y,
                  long ldy) {
    long done = 0;
    if (M >= 8 && has_avx512()) {
        done = M & ~7L;
        gemm_rows_avx512(done, K, N, Wb, x, ldx, y, ldy);
    }
    for (long n0 = 0; n0 < N; n0 += 64) {
        const long pw = N - n0 < 64 ? N - n0 : 64;  // panel width; the panel is [K][pw]
        const float *P = Wb + n0 * K;
        for (long c0 = 0; c0 < pw; c0 += 16) {
            const long cols = pw - c0 < 16 ? pw - c0 : 16;
            const __m256i m0 = cols >= 8 ? _mm256_set1_epi32(-1) : tail_mask(cols);
            const __m256i m1 = cols >= 16 ? _mm256_set1_epi32(-1)
                             : cols > 8 ? tail_mask(cols - 8) : _mm256_setzero_si256();
            for (long r = done; r + 4 <= M; r += 4) {
                const float *xr = x + r * ldx;
                float *yr = y + r * ldy + n0 + c0;
                if (cols == 16) gemm_rows4x16(K, pw, P, c0, xr, ldx, yr, ldy, m0, m1, 1);
                else gemm_rows4x16(K, pw, P, c0, xr, ldx, yr, ldy, m0, m1, 0);
            }
        }
    }
    // Rows past the last group of four: one FMA chain per 8 columns would leave the FMA units
    // idle on latency; fk_gemv_t keeps eight chains going, with the same order over k.
    for (long r = done + ((M - done) & ~3L); r < M; r++) fk_gemv_t(K, N, Wb, x + r * ldx, y + r * ldy);
}

static inline __attribute__((always_inline)) void adam8(
    float *p, const float *g, float *m, float *v, long i, __m256i msk, __m256 b1, __m256 b2,
    __m256 omb1, __m256 omb2, __m256 stepSize, __m256 sqrtBc2, __m256 eps, int full) {
    __m256 gv = load8(g + i, msk, full);
    __m256 mv = load8(m + i, msk, full);
    __m256 vv = load8(v + i, msk, full);
    mv = _mm256_fmadd_ps(omb1, gv, _mm256_mul_ps(b1, mv));
    vv = _mm256_fmadd_ps(_mm256_mul_ps(omb2, gv), gv, _mm256_mul_ps(b2, vv));
    // PyTorch: denom = sqrt(v) / sqrt(bc2) + eps;  p -= (lr / bc1) * m / denom
    __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vv), sqrtBc2), eps);
    __m256 pv = load8(p + i, msk, full);
    pv = _mm256_fnmadd_ps(stepSize, _mm256_div_ps(mv, denom), pv);
    store8(m + i, msk, mv, full);
    store8(v + i, msk, vv, full);
    store8(p + i, msk, pv, full);
}

void fk_adam(long n, float *p, const float *g, float *m, float *v, float lr, float beta1,
             float beta2, float eps, float bc1, float bc2) {
    const __m256 b1 = _mm256_set1_ps(beta1), b2 = _mm256_set1_ps(beta2);
    const __m256 omb1 = _mm256_set1_ps(1.0f - beta1), omb2 = _mm256_set1_ps(1.0f - beta2);
    const __m256 stepSize = _mm256_set1_ps(lr / bc1), sqrtBc2 = _mm256_set1_ps(sqrtf(bc2));
    const __m256 e = _mm256_set1_ps(eps);
    const __m256i all = _mm256_set1_epi32(-1);
    long i = 0;
    for (; i + 8 <= n; i += 8) adam8(p, g, m, v, i, all, b1, b2, omb1, omb2, stepSize, sqrtBc2, e, 1);
    if (i < n) adam8(p, g, m, v, i, tail_mask(n - i), b1, b2, omb1, omb2, stepSize, sqrtBc2, e, 0);
}

double fk_sum_squares(const float *x, long n) {
    __m256d acc0 = _mm256_setzero_pd(), acc1 = _mm256_setzero_pd();
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256d lo = _mm256_cvtps_pd(_mm_loadu_ps(x + i));
        __m256d hi = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4));
        acc0 = _mm256_fmadd_pd(lo, lo, acc0);
        acc1 = _mm256_fmadd_pd(hi, hi, acc1);
    }
    double t[4];
    _mm256_storeu_pd(t, _mm256_add_pd(acc0, acc1));
    double s = (t[0] + t[1]) + (t[2] + t[3]);
    for (; i < n; i++) s += (double)x[i] * (double)x[i];
    return s;
}

void fk_scale(float *x, long n, float a) {
    for (long i = 0; i < n; i++) x[i] *= a;
}

void fk_add(float *y, const float *x, long n) {
    for (long i = 0; i < n; i++) y[i] += x[i];
}

void fk_fill_rows(float *dst, long rows, long n, const float *row) {
    for (long r = 0; r < rows; r++)
        for (long j = 0; j < n; j++) dst[r * n + j] = row[j];
}

void fk_pack_panels(long N, long K, const float *W, float *Wb) {
    for (long n0 = 0; n0 < N; n0 += 64) {
        long w = N - n0 < 64 ? N - n0 : 64;
        for (long k = 0; k < K; k++)
            for (long j = 0; j < w; j++) *Wb++ = W[(n0 + j) * K + k];
    }
}

void fk_pack_panels_t(long N, long K, const float *WT, float *Wb) {
    for (long n0 = 0; n0 < N; n0 += 64) {
        long w = N - n0 < 64 ? N - n0 : 64;
        for (long k = 0; k < K; k++)
            for (long j = 0; j < w; j++) *Wb++ = WT[k * N + n0 + j];
    }
}

// ---------------------------------------------------------------------------------------------
// Batched LSTM inference, "batch in lanes": every activation is stored [feature][NB] so one
// ymm register holds one feature of 8 windows. A unit's four gate pre-activations then sit in
// four registers lane-aligned with its cell state: the recurrent product, the input projection
// (K = In + H, both summed in one pass), the bias, the nonlinearities and the state update are
// fused per unit, with no intermediate [B][4H] buffer. Nothing here is used by training.

void fk_lstm_lanes_pack(long H, long In, const float *Wih, const float *Whh, const float *bih,
                        const float *bhh, float *Wp, float *bp) {
    const long K = In + H;
    for (long j = 0; j < H; j++) {
        for (long k = 0; k < K; k++)
            for (long g = 0; g < 4; g++) {
                long row = g * H + j;
                Wp[(j * K + k) * 4 + g] = k < In ? Wih[row * In + k] : Whh[row * H + (k - In)];
            }
        for (long g = 0; g < 4; g++) bp[j * 4 + g] = bih[g * H + j] + bhh[g * H + j];
    }
}

// NV (1..3) vectors of 8 lanes starting at lane b0. Fully unrolled over NV and the gates, so
// the 4 x NV accumulators stay in registers (12 + 3 inputs + 1 broadcast = 16 ymm at NV = 3).
// rows[k] is input row k (x rows, then h_prev rows): one loop, K = In (+ H).
static inline __attribute__((always_inline)) void lstm_lanes_tile(
    const int NV, long K, long H, const float *Wp, const float *bp, const float *const *rows,
    int first, float *c, float *ho, long ld, long b0) {
    const long stride = (first ? K + H : K) * 4;  // packed unit = In + H rows; first step reads In
    for (long j = 0; j < H; j++) {
        const float *w = Wp + j * stride;
        __m256 a0[3], a1[3], a2[3], a3[3];
        {
            __m256 b0v = _mm256_broadcast_ss(bp + 4 * j), b1v = _mm256_broadcast_ss(bp + 4 * j + 1);
            __m256 b2v = _mm256_broadcast_ss(bp + 4 * j + 2), b3v = _mm256_broadcast_ss(bp + 4 * j + 3);
            for (int v = 0; v < NV; v++) { a0[v] = b0v; a1[v] = b1v; a2[v] = b2v; a3[v] = b3v; }
        }
        for (long k = 0; k < K; k++, w += 4) {
            const float *r = rows[k] + b0;
            __m256 xv[3];
            for (int v = 0; v < NV; v++) xv[v] = _mm256_loadu_ps(r + 8 * v);
            __m256 wb = _mm256_broadcast_ss(w);
            for (int v = 0; v < NV; v++) a0[v] = _mm256_fmadd_ps(wb, xv[v], a0[v]);
            wb = _mm256_broadcast_ss(w + 1);
            for (int v = 0; v < NV; v++) a1[v] = _mm256_fmadd_ps(wb, xv[v], a1[v]);
            wb = _mm256_broadcast_ss(w + 2);
            for (int v = 0; v < NV; v++) a2[v] = _mm256_fmadd_ps(wb, xv[v], a2[v]);
            wb = _mm256_broadcast_ss(w + 3);
            for (int v = 0; v < NV; v++) a3[v] = _mm256_fmadd_ps(wb, xv[v], a3[v]);
        }
        float *cr = c + j * ld + b0, *hr = ho + j * ld + b0;
        for (int v = 0; v < NV; v++) {
            __m256 i = sigmoid8(a0[v]);
            __m256 f = sigmoid8(a1[v]);
            __m256 g = tanh8(a2[v]);
            __m256 o = sigmoid8(a3[v]);
            __m256 cv = _mm256_mul_ps(i, g);
            if (!first) cv = _mm256_fmadd_ps(f, _mm256_loadu_ps(cr + 8 * v), cv);
            _mm256_storeu_ps(cr + 8 * v, cv);
            _mm256_storeu_ps(hr + 8 * v, _mm256_mul_ps(o, tanh8(cv)));
        }
    }
}

// The same tile with 16-lane AVX-512 vectors (2 x 16 = 32 windows), for CPUs that have it:
// a window gets the same prediction on either path.
AVX512 static inline __attribute__((always_inline)) void lstm_lanes_tile16(
    const int NV, long K, long H, const float *Wp, const float *bp, const float *const *rows,
    int first, float *c, float *ho, long ld, long b0) {
    const long stride = (first ? K + H : K) * 4;
    for (long j = 0; j < H; j++) {
        const float *w = Wp + j * stride;
        __m512 a0[2], a1[2], a2[2], a3[2];
        for (int v = 0; v < NV; v++) {
            a0[v] = _mm512_set1_ps(bp[4 * j]); a1[v] = _mm512_set1_ps(bp[4 * j + 1]);
            a2[v] = _mm512_set1_ps(bp[4 * j + 2]); a3[v] = _mm512_set1_ps(bp[4 * j + 3]);
        }
        for (long k = 0; k < K; k++, w += 4) {
            const float *r = rows[k] + b0;
            __m512 xv[2];
            for (int v = 0; v < NV; v++) xv[v] = _mm512_loadu_ps(r + 16 * v);
            __m512 wb = _mm512_set1_ps(w[0]);
            for (int v = 0; v < NV; v++) a0[v] = _mm512_fmadd_ps(wb, xv[v], a0[v]);
            wb = _mm512_set1_ps(w[1]);
            for (int v = 0; v < NV; v++) a1[v] = _mm512_fmadd_ps(wb, xv[v], a1[v]);
            wb = _mm512_set1_ps(w[2]);
            for (int v = 0; v < NV; v++) a2[v] = _mm512_fmadd_ps(wb, xv[v], a2[v]);
            wb = _mm512_set1_ps(w[3]);
            for (int v = 0; v < NV; v++) a3[v] = _mm512_fmadd_ps(wb, xv[v], a3[v]);
        }
        float *cr = c + j * ld + b0, *hr = ho + j * ld + b0;
        for (int v = 0; v < NV; v++) {
            __m512 i = sigmoid16(a0[v]);
            __m512 f = sigmoid16(a1[v]);
            __m512 g = tanh16(a2[v]);
            __m512 o = sigmoid16(a3[v]);
            __m512 cv = _mm512_mul_ps(i, g);
            if (!first) cv = _mm512_fmadd_ps(f, _mm512_loadu_ps(cr + 16 * v), cv);
            _mm512_storeu_ps(cr + 16 * v, cv);
            _mm512_storeu_ps(hr + 16 * v, _mm512_mul_ps(o, tanh16(cv)));
        }
    }
}
AVX512 static void lstm_lanes_run16(int first, long K, long H, long NB, const float *Wp,
                                    const float *bp, const float *const *rows, float *c,
                                    float *h_out, long ld) {
    long b0 = 0;
    for (; b0 + 32 <= NB; b0 += 32) lstm_lanes_tile16(2, K, H, Wp, bp, rows, first, c, h_out, ld, b0);
    if (NB - b0 == 16) lstm_lanes_tile16(1, K, H, Wp, bp, rows, first, c, h_out, ld, b0);
}

long fk_lanes_width(void) { return has_avx512() ? 16 : 8; }
long fk_lanes_chunk(void) { return has_avx512() ? 32 : 24; }

static void lstm_lanes_run(int first, long K, long H, long NB, const float *Wp, const float *bp,
                           const float *const *rows, float *c, float *h_out, long ld) {
    if (NB % 16 == 0 && has_avx512()) { lstm_lanes_run16(first, K, H, NB, Wp, bp, rows, c, h_out, ld); return; }
    long b0 = 0;
    for (; b0 + 24 <= NB; b0 += 24) lstm_lanes_tile(3, K, H, Wp, bp, rows, first, c, h_out, ld, b0);
    if (NB - b0 == 16) lstm_lanes_tile(2, K, H, Wp, bp, rows, first, c, h_out, ld, b0);
    else if (NB - b0 == 8) lstm_lanes_tile(1, K, H, Wp, bp, rows, first, c, h_out, ld, b0);
}

void fk_lstm_lanes_step(long In, long H, long NB, const float *Wp, const float *bp,
                        const float *x, long ldx, const float *h_prev, float *c, float *h_out,
                        long ld) {
    // In + H input row pointers: on the stack (8 KB, fine on dispatch worker threads) unless
    // the layer is wider than any realistic model; then one heap block for this step.
    const float *stackRows[1024];
    const float **rows = In + H <= 1024 ? stackRows : malloc((size_t)(In + H) * sizeof *rows);
    if (!rows) abort();
    for (long k = 0; k < In; k++) rows[k] = x + k * ldx;
    if (h_prev) {
        for (long k = 0; k < H; k++) rows[In + k] = h_prev + k * ld;
        lstm_lanes_run(0, In + H, H, NB, Wp, bp, rows, c, h_out, ld);
    } else {
        lstm_lanes_run(1, In, H, NB, Wp, bp, rows, c, h_out, ld);
    }
    if (rows != stackRows) free(rows);
}

void fk_lanes_from_windows(long rows, long T, long In, const float *x, long NB, float *xT) {
    for (long t = 0; t < T; t++)
        for (long i = 0; i < In; i++) {
            float *d = xT + (t * In + i) * NB;
            for (long b = 0; b < rows; b++) d[b] = x[(b * T + t) * In + i];
            for (long b = rows; b < NB; b++) d[b] = 0.0f;
        }
}

void fk_lanes_head(long H, long NB, long rows, const float *h, const float *w, float bias,
                   float *out) {
    for (long b = 0; b < rows; b++) {
        float s = bias;
        for (long j = 0; j < H; j++) s += h[j * NB + b] * w[j];
        out[b] = s;
    }
}

long fk_fetch_add(long *p, long v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }

long fk_load_acquire(const long *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
void fk_store_release(long *p, long v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
long fk_exchange(long *p, long v) { return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST); }

int fk_claim(long *slot, long g) {
    long old = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    while (old < g)
        if (__atomic_compare_exchange_n(slot, &old, g, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) return 1;
    return 0;
}

static long elapsed_ns(const struct timespec *t0) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (t.tv_sec - t0->tv_sec) * 1000000000L + (t.tv_nsec - t0->tv_nsec);
}

long fk_spin_until_changed(const long *p, long v, long nanos) {
    // Time-based: what one pause costs varies by CPU and under a hypervisor.
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    long now = __atomic_load_n(p, __ATOMIC_ACQUIRE);
    for (long i = 1; now == v; i++) {
        _mm_pause();
        now = __atomic_load_n(p, __ATOMIC_ACQUIRE);
        if ((i & 63) == 0 && elapsed_ns(&t0) >= nanos) break;
    }
    return now;
}

void fk_pause(void) { _mm_pause(); }

// Float16 conversions by the F16C instructions (part of x86-64-v3): the compiler's own are
// library calls, one per value, and a checkpoint converts tens of millions of values.
int fk_halves_pack(const double *x, long n, double unit, unsigned short *out) {
    for (long i = 0; i < n; i++) {
        double q = x[i] / unit;
        float f = (float)q;
        if ((double)f != q) return 0;   // also NaN
        unsigned short h = _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
        if ((double)_cvtsh_ss(h) * unit != x[i]) return 0;
        out[i] = h;
    }
    return 1;
}

void fk_halves_unpack(const unsigned short *codes, long n, double unit, double *out) {
    for (long i = 0; i < n; i++) out[i] = (double)_cvtsh_ss(codes[i]) * unit;
}

// How many of `n` Float16 codes (times `unit`) lie at least `d` from `median` once `floor` is
// taken off: max(|h - median| - floor, 0), rounded to float, >= d (a NaN counts nowhere).
// The contextual check's empirical tail, counted over its history at every scored point.
long fk_halves_count_far(const unsigned short *codes, long n, double unit, double median, double floor, float d) {
    long count = 0, i = 0;
    const __m256d u = _mm256_set1_pd(unit), m = _mm256_set1_pd(median), f = _mm256_set1_pd(floor);
    const __m256d zero = _mm256_setzero_pd(), sign = _mm256_set1_pd(-0.0);
    const __m128 dd = _mm_set1_ps(d);
    for (; i + 8 <= n; i += 8) {
        __m256 h = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(codes + i)));
        __m256d parts[2] = { _mm256_cvtps_pd(_mm256_castps256_ps128(h)), _mm256_cvtps_pd(_mm256_extractf128_ps(h, 1)) };
        for (int k = 0; k < 2; k++) {
            __m256d x = _mm256_sub_pd(_mm256_andnot_pd(sign, _mm256_sub_pd(_mm256_mul_pd(parts[k], u), m)), f);
            x = _mm256_max_pd(zero, x);   // the second operand when either is NaN: NaN stays NaN
            __m128 xf = _mm256_cvtpd_ps(x);
            count += __builtin_popcount(_mm_movemask_ps(_mm_cmp_ps(xf, dd, _CMP_GE_OQ)));
        }
    }
    for (; i < n; i++) {
        double x = fabs((double)_cvtsh_ss(codes[i]) * unit - median) - floor;
        if (x < 0) x = 0;
        if ((float)x >= d) count++;
    }
    return count;
}
