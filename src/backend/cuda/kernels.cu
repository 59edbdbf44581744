// CUDA kernels for the channels-last (NHWC) network path (src/backend/cuda/).
//
// Compiled to PTX by src/backend/cuda/build.rs (nvcc --ptx) when the `cuda` feature is on and loaded at run time
// through candle's `CudaDevice::get_or_load_custom_func`. Every kernel takes an activation
// [B, R, C] with R = H*W rows of C contiguous channels (NHWC flattened), element type float,
// __half or __nv_bfloat16 (suffixes _f32, _f16, _bf16). Arithmetic and statistics are f32.
//
// Normalisation + activation is three launches:
//   1. norm_stats_*    per (image, row block, channel): count-free partial (mean, M2) in f32,
//                      shifted sums within a thread, Chan's combination across threads;
//   2. norm_finalize   per (image, group): combines the partials, writes per (image, channel)
//                      scale = gamma * rstd and shift = beta - mean * scale;
//   3. scale_act_*     y = act(x * scale + shift) (also used alone for BatchNorm / identity).
// Activation codes: 0 identity, 1 gelu (erf form), 2 relu, 3 elu(alpha).

#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <stdint.h>

typedef __half f16;
typedef __nv_bfloat16 bf16;

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(f16 x) { return __half2float(x); }
__device__ __forceinline__ float to_f(bf16 x) { return __bfloat162float(x); }

template <typename T> __device__ __forceinline__ T from_f(float x);
template <> __device__ __forceinline__ float from_f<float>(float x) { return x; }
template <> __device__ __forceinline__ f16 from_f<f16>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ bf16 from_f<bf16>(float x) { return __float2bfloat16_rn(x); }

__device__ __forceinline__ float act_f(float v, int act, float alpha) {
    switch (act) {
    case 1: return 0.5f * v * (1.0f + erff(v * 0.70710678118654752440f));
    case 2: return fmaxf(v, 0.0f);
    case 3: return v > 0.0f ? v : alpha * expm1f(v);
    default: return v;
    }
}

// Chan et al.: merge (nb, mb, m2b) into (na, ma, m2a).
__device__ __forceinline__ void chan_merge(float &na, float &ma, float &m2a, float nb, float mb, float m2b) {
    if (nb == 0.0f) return;
    if (na == 0.0f) { na = nb; ma = mb; m2a = m2b; return; }
    float n = na + nb;
    float d = mb - ma;
    float f = nb / n;
    ma += d * f;
    m2a += m2b + d * d * na * f;
    na = n;
}

#define STATS_THREADS 256

// grid (P, ceil(C / ct), B), block STATS_THREADS. Part p covers rows [p*rpp, min(R, (p+1)*rpp)).
// Thread: channel c = blockIdx.y*ct + tid % ct, row lane tid / ct (lanes = STATS_THREADS / ct).
// part[(b*P + p)*C + c] = (mean, M2) of that part's rows for channel c.
template <typename T>
__device__ void norm_stats(const T *__restrict__ x, float2 *__restrict__ part, int R, int C, int rpp, int ct) {
    __shared__ float s_n[STATS_THREADS], s_m[STATS_THREADS], s_q[STATS_THREADS];
    const int P = gridDim.x, p = blockIdx.x, b = blockIdx.z, tid = threadIdx.x;
    const int lanes = STATS_THREADS / ct;
    const int cl = tid % ct, lane = tid / ct;
    const int c = blockIdx.y * ct + cl;
    const int r0 = p * rpp, r1 = min(R, r0 + rpp);
    const bool active = lane < lanes && c < C;
    float n = 0.0f, mean = 0.0f, m2 = 0.0f;
    if (active && r0 + lane < r1) {
        const T *xb = x + (size_t)b * R * C + c;
        const float k = to_f(xb[(size_t)(r0 + lane) * C]);
        float s = 0.0f, q = 0.0f;
        int cnt = 0;
        int r = r0 + lane;
        // Two independent loads in flight per iteration.
        for (; r + lanes < r1; r += 2 * lanes) {
            float v0 = to_f(xb[(size_t)r * C]) - k;
            float v1 = to_f(xb[(size_t)(r + lanes) * C]) - k;
            s += v0 + v1;
            q = fmaf(v0, v0, fmaf(v1, v1, q));
            cnt += 2;
        }
        for (; r < r1; r += lanes) {
            float v = to_f(xb[(size_t)r * C]) - k;
            s += v;
            q = fmaf(v, v, q);
            cnt += 1;
        }
        n = (float)cnt;
        mean = k + s / n;
        m2 = fmaxf(q - s * s / n, 0.0f);
    }
    s_n[tid] = n; s_m[tid] = mean; s_q[tid] = m2;
    __syncthreads();
    if (active && lane == 0) {
        for (int l = 1; l < lanes; ++l) {
            int i = l * ct + cl;
            chan_merge(n, mean, m2, s_n[i], s_m[i], s_q[i]);
        }
        part[((size_t)b * P + p) * C + c] = make_float2(mean, m2);
    }
}

extern "C" __global__ void norm_stats_f32(const float *x, float2 *part, int R, int C, int rpp, int ct) { norm_stats<float>(x, part, R, C, rpp, ct); }
extern "C" __global__ void norm_stats_f16(const f16 *x, float2 *part, int R, int C, int rpp, int ct) { norm_stats<f16>(x, part, R, C, rpp, ct); }
extern "C" __global__ void norm_stats_bf16(const bf16 *x, float2 *part, int R, int C, int rpp, int ct) { norm_stats<bf16>(x, part, R, C, rpp, ct); }

#define FIN_THREADS 256

// grid (G, B), block FIN_THREADS. Group g holds channels [g*cpg, (g+1)*cpg).
// Combines the P*cpg partials of the group, then for each channel c of the group:
//   scale[b*C + c] = gamma[c] * rstd, shift[b*C + c] = beta[c] - mean * scale.
extern "C" __global__ void norm_finalize(const float2 *__restrict__ part, const float *__restrict__ gamma,
                                         const float *__restrict__ beta, float *__restrict__ scale,
                                         float *__restrict__ shift, int R, int C, int P, int rpp, int cpg,
                                         float eps) {
    __shared__ float s_n[FIN_THREADS], s_m[FIN_THREADS], s_q[FIN_THREADS];
    __shared__ float s_mean, s_rstd;
    const int g = blockIdx.x, b = blockIdx.y, tid = threadIdx.x;
    float n = 0.0f, mean = 0.0f, m2 = 0.0f;
    const int items = P * cpg;
    for (int i = tid; i < items; i += FIN_THREADS) {
        int p = i / cpg, c = g * cpg + i % cpg;
        int r0 = p * rpp;
        float np = (float)max(0, min(R, r0 + rpp) - r0);
        float2 v = part[((size_t)b * P + p) * C + c];
        chan_merge(n, mean, m2, np, v.x, v.y);
    }
    s_n[tid] = n; s_m[tid] = mean; s_q[tid] = m2;
    __syncthreads();
    for (int off = FIN_THREADS / 2; off > 0; off >>= 1) {
        if (tid < off) {
            chan_merge(n, mean, m2, s_n[tid + off], s_m[tid + off], s_q[tid + off]);
            s_n[tid] = n; s_m[tid] = mean; s_q[tid] = m2;
        }
        __syncthreads();
    }
    if (tid == 0) {
        float var = s_n[0] > 0.0f ? s_q[0] / s_n[0] : 0.0f;  // biased, as PyTorch's norms
        s_mean = s_m[0];
        s_rstd = 1.0f / sqrtf(var + eps);
    }
    __syncthreads();
    for (int i = tid; i < cpg; i += FIN_THREADS) {
        int c = g * cpg + i;
        float sc = gamma[c] * s_rstd;
        scale[(size_t)b * C + c] = sc;
        shift[(size_t)b * C + c] = beta[c] - s_mean * sc;
    }
}

// y[b, r, c] = act(x[b, r, c] * scale[b*sb + c] + shift[b*sb + c]); sb = C (per image) or 0.
// Scalar version: any C, any alignment. n = B*R*C, rc = R*C.
template <typename T>
__device__ void scale_act(const T *__restrict__ x, T *__restrict__ y, const float *__restrict__ scale,
                          const float *__restrict__ shift, size_t n, size_t rc, int C, int sb, int act,
                          float alpha) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        int c = (int)(i % C);
        size_t b = i / rc;
        size_t k = b * sb + c;
        y[i] = from_f<T>(act_f(fmaf(to_f(x[i]), scale[k], shift[k]), act, alpha));
    }
}

extern "C" __global__ void scale_act_f32(const float *x, float *y, const float *scale, const float *shift, size_t n, size_t rc, int C, int sb, int act, float alpha) { scale_act<float>(x, y, scale, shift, n, rc, C, sb, act, alpha); }
extern "C" __global__ void scale_act_f16(const f16 *x, f16 *y, const float *scale, const float *shift, size_t n, size_t rc, int C, int sb, int act, float alpha) { scale_act<f16>(x, y, scale, shift, n, rc, C, sb, act, alpha); }
extern "C" __global__ void scale_act_bf16(const bf16 *x, bf16 *y, const float *scale, const float *shift, size_t n, size_t rc, int C, int sb, int act, float alpha) { scale_act<bf16>(x, y, scale, shift, n, rc, C, sb, act, alpha); }

// ------------------------------------------------------------------------------------------
// STFT / iSTFT around cuFFT (src/backend/cuda/stft.rs), as torch.stft / torch.istft with a periodic
// Hann window, center=True (reflect padding), one-sided, no normalisation.
// Signals: J = n_chunks * channels, each `len` samples; T = len / hop + 1 frames.

// frames[(j*T + t)*n_fft + s] = x[j*len + reflect(t*hop + s - n_fft/2)] * win[s]
extern "C" __global__ void stft_frames(const float *__restrict__ x, const float *__restrict__ win,
                                       float *__restrict__ frames, int len, int n_fft, int hop, int T,
                                       size_t total) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        int s = (int)(i % n_fft);
        size_t row = i / n_fft;
        int t = (int)(row % T);
        size_t j = row / T;
        int p = t * hop + s - n_fft / 2;
        if (p < 0) p = -p;
        if (p >= len) p = 2 * (len - 1) - p;
        frames[i] = x[j * len + p] * win[s];
    }
}

// spec [N, 4, dim_f, T] (c4 = ch*2 + re/im) from bins [(N*2*T), n_bins] complex.
template <typename T>
__device__ void stft_pack(const float2 *__restrict__ bins, T *__restrict__ spec, int n_bins, int dim_f, int nT,
                          size_t total) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        int t = (int)(i % nT);
        size_t r = i / nT;
        int k = (int)(r % dim_f);
        size_t q = r / dim_f;  // b*4 + c4
        int c4 = (int)(q % 4);
        size_t b = q / 4;
        size_t row = (b * 2 + c4 / 2) * nT + t;
        float2 v = bins[row * n_bins + k];
        spec[i] = from_f<T>((c4 & 1) ? v.y : v.x);
    }
}
extern "C" __global__ void stft_pack_f32(const float2 *bins, float *spec, int n_bins, int dim_f, int nT, size_t total) { stft_pack<float>(bins, spec, n_bins, dim_f, nT, total); }
extern "C" __global__ void stft_pack_f16(const float2 *bins, f16 *spec, int n_bins, int dim_f, int nT, size_t total) { stft_pack<f16>(bins, spec, n_bins, dim_f, nT, total); }
extern "C" __global__ void stft_pack_bf16(const float2 *bins, bf16 *spec, int n_bins, int dim_f, int nT, size_t total) { stft_pack<bf16>(bins, spec, n_bins, dim_f, nT, total); }

// bins [(J*T), n_bins] complex from spec [J/2 pairs..]: signal j's real plane is spec plane 2j,
// its imaginary plane 2j+1, each [dim_f, T]. Bins >= dim_f are zero; the imaginary parts of DC
// and Nyquist are dropped (as torch.istft's one-sided inverse does).
template <typename T>
__device__ void istft_unpack(const T *__restrict__ spec, float2 *__restrict__ bins, int n_bins, int dim_f, int nT,
                             size_t total) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        int k = (int)(i % n_bins);
        size_t row = i / n_bins;
        int t = (int)(row % nT);
        size_t j = row / nT;
        float2 v = make_float2(0.0f, 0.0f);
        if (k < dim_f) {
            v.x = to_f(spec[((2 * j) * dim_f + k) * nT + t]);
            v.y = (k == 0 || k == n_bins - 1) ? 0.0f : to_f(spec[((2 * j + 1) * dim_f + k) * nT + t]);
        }
        bins[i] = v;
    }
}
extern "C" __global__ void istft_unpack_f32(const float *spec, float2 *bins, int n_bins, int dim_f, int nT, size_t total) { istft_unpack<float>(spec, bins, n_bins, dim_f, nT, total); }
extern "C" __global__ void istft_unpack_f16(const f16 *spec, float2 *bins, int n_bins, int dim_f, int nT, size_t total) { istft_unpack<f16>(spec, bins, n_bins, dim_f, nT, total); }
extern "C" __global__ void istft_unpack_bf16(const bf16 *spec, float2 *bins, int n_bins, int dim_f, int nT, size_t total) { istft_unpack<bf16>(spec, bins, n_bins, dim_f, nT, total); }

// y[j*len + s] = inv_env[s] * scale * sum_t frames[(j*T + t)*n_fft + (s + n_fft/2 - t*hop)] * win[..]
extern "C" __global__ void istft_ola(const float *__restrict__ frames, const float *__restrict__ win,
                                     const float *__restrict__ inv_env, float *__restrict__ y, int len, int n_fft,
                                     int hop, int nT, float scale, size_t total) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        int s = (int)(i % len);
        size_t j = i / len;
        int p = s + n_fft / 2;
        int t1 = min(nT - 1, p / hop);
        int t0 = p - n_fft + 1 <= 0 ? 0 : (p - n_fft + 1 + hop - 1) / hop;
        float acc = 0.0f;
        for (int t = t0; t <= t1; ++t) {
            int o = p - t * hop;
            acc += frames[(j * nT + t) * n_fft + o] * scale * win[o];
        }
        y[i] = acc * inv_env[s];
    }
}

// ------------------------------------------------------------------------------------------
// Norm statistics with 16-byte loads (C % V == 0, C / V <= 256, aligned rows): the same
// output as norm_stats (per part and channel: mean and M2, merged by norm_finalize), with each
// thread reducing V channels of every lanes-th row of its part. Each thread shifts by its own
// first value; threads of one channel are merged with Chan's formula.
template <typename T, int V>
__device__ void norm_stats_v(const T *__restrict__ x, float2 *__restrict__ part, int R, int C, int rpp) {
    __shared__ float s_m[STATS_THREADS * V], s_q[STATS_THREADS * V], s_n[STATS_THREADS];
    const int P = gridDim.x, p = blockIdx.x, b = blockIdx.z, tid = threadIdx.x;
    const int G = C / V, lanes = STATS_THREADS / G;
    const int g = tid % G, lane = tid / G;
    const int r0 = p * rpp, r1 = min(R, r0 + rpp);
    float n = 0.0f, mean[V], m2[V];
#pragma unroll
    for (int j = 0; j < V; ++j) { mean[j] = 0.0f; m2[j] = 0.0f; }
    if (lane < lanes && r0 + lane < r1) {
        const uint4 *xb = reinterpret_cast<const uint4 *>(x + (size_t)b * R * C) + g;
        float k[V], s[V], q[V];
        {
            uint4 raw = xb[(size_t)(r0 + lane) * G];
            const T *v = reinterpret_cast<const T *>(&raw);
#pragma unroll
            for (int j = 0; j < V; ++j) { k[j] = to_f(v[j]); s[j] = 0.0f; q[j] = 0.0f; }
        }
        int cnt = 0;
        int r = r0 + lane;
        for (; r + 3 * lanes < r1; r += 4 * lanes) {
            uint4 a[4];
#pragma unroll
            for (int u = 0; u < 4; ++u) a[u] = xb[(size_t)(r + u * lanes) * G];
#pragma unroll
            for (int u = 0; u < 4; ++u) {
                const T *va = reinterpret_cast<const T *>(&a[u]);
#pragma unroll
                for (int j = 0; j < V; ++j) {
                    float d = to_f(va[j]) - k[j];
                    s[j] += d;
                    q[j] = fmaf(d, d, q[j]);
                }
            }
            cnt += 4;
        }
        for (; r < r1; r += lanes) {
            uint4 a = xb[(size_t)r * G];
            const T *va = reinterpret_cast<const T *>(&a);
#pragma unroll
            for (int j = 0; j < V; ++j) {
                float d = to_f(va[j]) - k[j];
                s[j] += d;
                q[j] = fmaf(d, d, q[j]);
            }
            cnt += 1;
        }
        n = (float)cnt;
        const float inv = 1.0f / n;
#pragma unroll
        for (int j = 0; j < V; ++j) {
            mean[j] = k[j] + s[j] * inv;
            m2[j] = fmaxf(q[j] - s[j] * s[j] * inv, 0.0f);
        }
    }
    if (lane < lanes) {
        s_n[lane * G + g] = n;
#pragma unroll
        for (int j = 0; j < V; ++j) { s_m[lane * C + g * V + j] = mean[j]; s_q[lane * C + g * V + j] = m2[j]; }
    }
    __syncthreads();
    for (int c = tid; c < C; c += STATS_THREADS) {
        const int gc = c / V;
        float nn = 0.0f, mm = 0.0f, qq = 0.0f;
        for (int l = 0; l < lanes; ++l) chan_merge(nn, mm, qq, s_n[l * G + gc], s_m[l * C + c], s_q[l * C + c]);
        part[((size_t)b * P + p) * C + c] = make_float2(mm, qq);
    }
}

extern "C" __global__ void norm_stats_v_f32(const float *x, float2 *part, int R, int C, int rpp) { norm_stats_v<float, 4>(x, part, R, C, rpp); }
extern "C" __global__ void norm_stats_v_f16(const f16 *x, float2 *part, int R, int C, int rpp) { norm_stats_v<f16, 8>(x, part, R, C, rpp); }
extern "C" __global__ void norm_stats_v_bf16(const bf16 *x, float2 *part, int R, int C, int rpp) { norm_stats_v<bf16, 8>(x, part, R, C, rpp); }

// y = act(x * scale + shift), vector form: grid (ceil(R / rpb), 1, B), block 256; each thread
// keeps the scale/shift of its V channels in registers. sb = C (per image) or 0 (shared).
template <typename T, int V>
__device__ void scale_act2(const T *__restrict__ x, T *__restrict__ y, const float *__restrict__ scale,
                           const float *__restrict__ shift, int R, int C, int sb, int act, float alpha, int rpb) {
    const int b = blockIdx.z, tid = threadIdx.x;
    const int G = C / V, lanes = 256 / G;
    const int g = tid % G, lane = tid / G;
    if (lane >= lanes) return;
    float sc[V], sh[V];
#pragma unroll
    for (int j = 0; j < V; ++j) { sc[j] = scale[b * sb + g * V + j]; sh[j] = shift[b * sb + g * V + j]; }
    const uint4 *xv = reinterpret_cast<const uint4 *>(x + (size_t)b * R * C) + g;
    uint4 *yv = reinterpret_cast<uint4 *>(y + (size_t)b * R * C) + g;
    const int r0 = blockIdx.x * rpb, r1 = min(R, r0 + rpb);
    for (int r = r0 + lane; r < r1; r += lanes) {
        uint4 raw = xv[(size_t)r * G];
        T *v = reinterpret_cast<T *>(&raw);
#pragma unroll
        for (int j = 0; j < V; ++j) v[j] = from_f<T>(act_f(fmaf(to_f(v[j]), sc[j], sh[j]), act, alpha));
        yv[(size_t)r * G] = raw;
    }
}

extern "C" __global__ void scale_act2_f32(const float *x, float *y, const float *scale, const float *shift, int R, int C, int sb, int act, float alpha, int rpb) { scale_act2<float, 4>(x, y, scale, shift, R, C, sb, act, alpha, rpb); }
extern "C" __global__ void scale_act2_f16(const f16 *x, f16 *y, const float *scale, const float *shift, int R, int C, int sb, int act, float alpha, int rpb) { scale_act2<f16, 8>(x, y, scale, shift, R, C, sb, act, alpha, rpb); }
extern "C" __global__ void scale_act2_bf16(const bf16 *x, bf16 *y, const float *scale, const float *shift, int R, int C, int sb, int act, float alpha, int rpb) { scale_act2<bf16, 8>(x, y, scale, shift, R, C, sb, act, alpha, rpb); }

// ------------------------------------------------------------------------------------------
// Upscale's depth-to-space fused with the decoder's concatenation, 16 bytes per thread:
//   out[b, Y, X, 0:Co]      = up[((b*T + Y/st)*F + X/sf), ((Y%st)*sf + X%sf)*Co + :]
//   out[b, Y, X, Co:Co+Cs]  = skip[b, Y, X, :]
// up is the Upscale matmul's output [B*T*F, st*sf*Co]; out is [B, T*st, F*sf, Co + Cs].
// Needs Co % V == 0, Cs % V == 0 (V = 16 / sizeof(T)). rows = B*T*st*F*sf.
extern "C" __global__ void d2s_concat(const uint4 *__restrict__ up, const uint4 *__restrict__ skip, uint4 *__restrict__ out,
                                      int T, int F, int st, int sf, int co, int cs, unsigned total) {
    // co, cs in uint4 units; total < 2^31 (the host checks), so 32-bit index arithmetic.
    const unsigned cw = co + cs;
    const unsigned Fo = F * sf, To = T * st;
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
        unsigned c = i % cw;
        unsigned row = i / cw;  // (b*To + Y)*Fo + X
        unsigned X = row % Fo;
        unsigned by = row / Fo;
        unsigned Y = by % To;
        unsigned b = by / To;
        uint4 v;
        if (c < (unsigned)co) {
            size_t src = ((size_t)(b * T + Y / st) * F + X / sf) * (size_t)(st * sf * co) + (size_t)((Y % st) * sf + X % sf) * co + c;
            v = up[src];
        } else {
            v = skip[(size_t)row * cs + (c - co)];
        }
        out[i] = v;
    }
}

// out = a * b elementwise, 16 bytes per thread (n vectors).
template <typename T, int V>
__device__ void mul_vec(const uint4 *__restrict__ a, const uint4 *__restrict__ b, uint4 *__restrict__ out, size_t n) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint4 x = a[i], y = b[i];
        T *xv = reinterpret_cast<T *>(&x);
        const T *yv = reinterpret_cast<const T *>(&y);
#pragma unroll
        for (int j = 0; j < V; ++j) xv[j] = from_f<T>(to_f(xv[j]) * to_f(yv[j]));
        out[i] = x;
    }
}
extern "C" __global__ void mul_vec_f32(const uint4 *a, const uint4 *b, uint4 *out, size_t n) { mul_vec<float, 4>(a, b, out, n); }
extern "C" __global__ void mul_vec_f16(const uint4 *a, const uint4 *b, uint4 *out, size_t n) { mul_vec<f16, 8>(a, b, out, n); }
extern "C" __global__ void mul_vec_bf16(const uint4 *a, const uint4 *b, uint4 *out, size_t n) { mul_vec<bf16, 8>(a, b, out, n); }
