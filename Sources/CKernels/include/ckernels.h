#ifndef FORECASTD_CKERNELS_H
#define FORECASTD_CKERNELS_H

// Hot loops for the forecast core. Compiled with -O3 -march=x86-64-v3 (AVX2 + FMA).
// All buffers are plain float arrays; sizes are element counts. Nothing here allocates.

#ifdef __cplusplus
extern "C" {
#endif

// In-place activations, max error ~1e-7 absolute (sigmoid) / ~2e-7 relative (tanh),
// instead of glibc expf/tanhf which are 3-4x slower in the training loop.
void fk_sigmoid(float *x, long n);
void fk_tanh(float *x, long n);

// LSTM pointwise forward for one time step, B rows, PyTorch gate order (i, f, g, o).
// z: [B][4H] pre-activations in, post-activation gates out.
// c_prev: [B][H] or NULL (zero state). c, tanh_c, h: [B][H] outputs.
void fk_lstm_cell_forward(long B, long H, float *z, const float *c_prev,
                          float *c, float *tanh_c, float *h);

// LSTM pointwise backward for one time step.
// gates: [B][4H] post-activation; c_prev: [B][H] or NULL; tanh_c: [B][H];
// dh: [B][H] total gradient into h_t; dc: [B][H] in = dc from t+1 (dc_next), out = dc_{t-1}
// (gradient flowing into c_{t-1}); dz: [B][4H] out = d(pre-activation).
void fk_lstm_cell_backward(long B, long H, const float *gates, const float *c_prev,
                           const float *tanh_c, const float *dh, float *dc, float *dz);

// y[N] += x[K] . W^T, with W^T ([K][N]) stored in 64-column panels (see fk_pack_panels).
// Batch-1 inference: a BLAS call per step costs more than the work itself.
void fk_gemv_t(long K, long N, const float *Wb, const float *x, float *y);

// y[m][n] += x[m][k] . W^T for a few rows m < M (a block of time steps, a training shard),
// W packed by fk_pack_panels, so nothing is re-packed per call (as a BLAS call would). Groups
// of 8 rows use AVX-512 where the CPU has it. Each y element accumulates over k in order, as
// in fk_gemv_t, on every path. x rows have stride ldx, y rows stride ldy.
void fk_gemm_rows(long M, long K, long N, const float *Wb, const float *x, long ldx, float *y,
                  long ldy);

// Pack W ([N][K] row-major, PyTorch weight layout) into the panel layout fk_gemv_t reads.
void fk_pack_panels(long N, long K, const float *W, float *Wb);
// The same for a matrix given transposed: WT is [K][N] row-major (W = WTᵀ).
void fk_pack_panels_t(long N, long K, const float *WT, float *Wb);

// Adam update (PyTorch semantics, weight_decay 0). bc1 = 1 - beta1^t, bc2 = 1 - beta2^t.
void fk_adam(long n, float *p, const float *g, float *m, float *v, float lr,
             float beta1, float beta2, float eps, float bc1, float bc2);

// Float16 lists of a checkpoint, `unit` a power of two: out[i] = the bits of x[i] / unit as
// Float16; returns 1 when every x[i] is exactly that Float16 times unit (else 0, out unspecified).
int fk_halves_pack(const double *x, long n, double unit, unsigned short *out);
// out[i] = codes[i] (Float16 bits) as a double, times unit.
void fk_halves_unpack(const unsigned short *codes, long n, double unit, double *out);
/// Codes (times unit) at least d from median, floor taken off, compared as float.
long fk_halves_count_far(const unsigned short *codes, long n, double unit, double median, double floor, float d);

// Sum of squares in double precision (global gradient norm must not lose bits over ~1e5 terms).
double fk_sum_squares(const float *x, long n);

// x[i] *= a
void fk_scale(float *x, long n, float a);

// y[i] += x[i]
void fk_add(float *y, const float *x, long n);

// Every row of dst[rows][n] = row[n] (bias broadcast before a beta=1 GEMM).
void fk_fill_rows(float *dst, long rows, long n, const float *row);

// Batched LSTM inference with the batch in the lanes: activations are [feature][NB], NB a
// multiple of 8, or of 16 to use AVX-512 (lanes of a window past the real rows are padding,
// computed and ignored).
// fk_lstm_lanes_pack packs one layer: Wp [H][In + H][4] (unit j, input k: W_ih columns then
// W_hh columns, gates i, f, g, o), bp [H][4] = b_ih + b_hh.
void fk_lstm_lanes_pack(long H, long In, const float *Wih, const float *Whh, const float *bih,
                        const float *bhh, float *Wp, float *bp);
// One step of one layer for NB lanes: x [In][ldx] (this step's input), h_prev [H][ld] or NULL
// (zero state: first step), c [H][ld] in/out (not read when h_prev is NULL), h_out [H][ld].
// (Allocates only for In + H > 1024.)
void fk_lstm_lanes_step(long In, long H, long NB, const float *Wp, const float *bp,
                        const float *x, long ldx, const float *h_prev, float *c, float *h_out,
                        long ld);
// Lanes per vector (NB must be a multiple: 16 where the CPU has AVX-512, else 8) and windows
// per chunk whose state stays in L1 (32 or 24).
long fk_lanes_width(void);
long fk_lanes_chunk(void);
// x [rows][T][In] batch-first -> xT [T][In][NB], lanes rows..NB-1 zeroed.
void fk_lanes_from_windows(long rows, long T, long In, const float *x, long NB, float *xT);
// out[b] = bias + sum_j h[j][b] * w[j] for b < rows (h is [H][NB]).
void fk_lanes_head(long H, long NB, long rows, const float *h, const float *w, float bias,
                   float *out);
// Relaxed atomic fetch-and-add (work sharing between inference workers).
long fk_fetch_add(long *p, long v);
// Acquire load / release store / sequentially consistent exchange: how a caller and the
// process's helper thread (PipelineHelper) hand work to each other.
long fk_load_acquire(const long *p);
void fk_store_release(long *p, long v);
long fk_exchange(long *p, long v);
// One spin-wait hint (x86 PAUSE).
void fk_pause(void);
// Claims a task slot for generation g: 1 if *slot was below g and is now g, else 0.
int fk_claim(long *slot, long g);
// Spin (with pause) for at most `nanos` ns while *p == v; returns the last value read.
long fk_spin_until_changed(const long *p, long v, long nanos);

#ifdef __cplusplus
}
#endif

#endif
