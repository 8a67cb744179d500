// The selective scan on the CPU: one pass over the sequence with the state in registers.
//
// Built at first use by vfimamba/scan_cpu.py with the system C++ compiler (-O3 -march=native) and
// called through ctypes, one contiguous range of channels per thread. Semantics are those of
// vfimamba.scan.selective_scan; inputs are float32, contiguous:
//   delta, u, y: (b, d, L); A2 = A * log2(e): (d, n); Bt, Ct: (b, g, L, n) (time-major, so the n
//   values of one step are adjacent); D, bias: (d,).
// Eight channels of one (batch, group) are processed together, one channel per vector lane, so a
// step's B and C values are broadcasts. Decays e^{delta A} must be <= 1 (delta >= 0, A <= 0); the
// Python side checks that.
#include <cstdint>
#include <cstring>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

typedef float v8 __attribute__((vector_size(32)));
typedef uint32_t v8u __attribute__((vector_size(32)));

typedef int32_t v8i __attribute__((vector_size(32)));
static inline v8 splat(float a) { return v8{} + a; }
static inline v8 load(const float *p) { v8 v; std::memcpy(&v, p, 32); return v; }
#if defined(__clang__)
#define SHUF(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define SHUF(a, b, ...) __builtin_shuffle(a, b, v8i{__VA_ARGS__})
#endif
// Hides a vector from the optimiser, costing no instruction (see exp2_neg); where a v8 has no register of its
// own it does nothing.
#if defined(__AVX__)
#define OPAQUE(v) __asm__("" : "+x"(v))
#else
#define OPAQUE(v) (void)0
#endif

// r[j][t] -> r[t][j] for an 8 x 8 block held in 8 vectors (unpack, 2-lane shuffle, 128-bit swap).
static inline void transpose8(v8 r[8]) {
    v8 t[8], s[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = SHUF(r[i], r[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
        t[i + 1] = SHUF(r[i], r[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
    }
    for (int i = 0; i < 8; i += 4) {
        s[i] = SHUF(t[i], t[i + 2], 0, 1, 8, 9, 4, 5, 12, 13);
        s[i + 1] = SHUF(t[i], t[i + 2], 2, 3, 10, 11, 6, 7, 14, 15);
        s[i + 2] = SHUF(t[i + 1], t[i + 3], 0, 1, 8, 9, 4, 5, 12, 13);
        s[i + 3] = SHUF(t[i + 1], t[i + 3], 2, 3, 10, 11, 6, 7, 14, 15);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = SHUF(s[i], s[i + 4], 0, 1, 2, 3, 8, 9, 10, 11);
        r[i + 4] = SHUF(s[i], s[i + 4], 4, 5, 6, 7, 12, 13, 14, 15);
    }
}

// Rows [row0, row0 + 8*stride) x 8 steps into tile[t0 .. t0+8][8], and back.
static inline void load_block(float (*tile)[8], const float *row0, long stride) {
    v8 r[8];
    for (int j = 0; j < 8; j++) r[j] = load(row0 + j * stride);
    transpose8(r);
    for (int t = 0; t < 8; t++) std::memcpy(tile[t], &r[t], 32);
}
static inline void store_block(float *row0, long stride, float (*tile)[8]) {
    v8 r[8];
    for (int t = 0; t < 8; t++) r[t] = load(tile[t]);
    transpose8(r);
    for (int j = 0; j < 8; j++) std::memcpy(row0 + j * stride, &r[j], 32);
}

// 2^t for t <= 0 to about 1 ulp. Clamped at -126, below which the result would be denormal (a decay of
// 1e-38 is 0 for any purpose here). CLAMP false: the caller knows t >= -126.
// With AVX2, t = m/8 + r, m the nearest integer to 8t and |r| <= 1/16: 2^(m/8) from a table of the eight
// 2^(j/8) (j = m mod 8, one vpermps) with m div 8 added to its exponent bits, 2^r by a degree-3
// polynomial. Four multiply-adds where a degree-6 polynomial over |r| <= 1/2 takes six, and the scan
// is bound by the multiply-add units: each state-step also has its 2^t's argument, delta u B, the
// state update and y's sum (10 -> 8 of them, about 20 % less time). Without AVX2: the polynomial.
template <bool CLAMP = true>
static inline v8 exp2_neg(v8 t) {
    if (CLAMP) {
        // as an unsigned min of the bits: for t <= 0 a larger pattern is a more negative number (so a
        // negative NaN becomes -126, a positive one stays NaN); a float max would be a compare and a blend
        const v8u tb = (v8u)t, lo = (v8u)splat(-126.0f);
        t = (v8)(tb < lo ? tb : lo);
    } else {
        OPAQUE(t);  // else the compiler fuses the product into t + magic and t - k, and copies registers
    }
#if defined(__AVX2__)
    const v8 magic = splat(1572864.0f);  // 1.5 * 2^20: adding it rounds t to a multiple of 1/8, m in the low bits
    const v8 km = t + magic;
    const v8 r = t - (km - magic);
    // bits of 2^(j/8) less j << 20, so that adding m << 20 = (m div 8) << 23 + j << 20 leaves 2^(m/8)
    // (the bits of magic leave in the shift; vpermps reads only the low 3 bits of each index, j)
    const __m256i table = _mm256_setr_epi32(0x3f800000, 0x3f7b95c2, 0x3f7837f0, 0x3f75fed7, 0x3f7504f3, 0x3f75672a,
                                            0x3f7744fd, 0x3f7ac0c7);
    const v8 tj = (v8)_mm256_permutevar8x32_ps(_mm256_castsi256_ps(table), _mm256_castps_si256((__m256)km));
    const v8 scale = (v8)((v8u)tj + ((v8u)km << 20));
    // 2^r = 1 + r q(r), fitted for relative error over |r| <= 1/16 (8.6e-8 as evaluated in float);
    // scale + scale (r q) rather than scale (1 + r q), whose rounding near 1 would cost half an ulp
    v8 q = splat(5.549621955e-02f);
    q = q * r + 2.402576357e-01f;
    q = q * r + 6.931472421e-01f;
    const v8 rq = r * q;
    return scale * rq + scale;
#else
    const v8 magic = splat(12582912.0f);  // 1.5 * 2^23: adding it rounds t and leaves k in the low bits
    v8 km = t + magic;
    v8 f = t - (km - magic);  // t = k + f, |f| <= 1/2
    v8 p = splat(1.5353362e-4f);
    p = p * f + 1.3398874e-3f;
    p = p * f + 9.6184291e-3f;
    p = p * f + 5.5503264e-2f;
    p = p * f + 2.4022648e-1f;
    p = p * f + 6.9314718e-1f;
    p = p * f + 1.0f;
    // k << 23 straight from the bits of km: those of magic leave in the shift (its low 9 bits are 0)
    return (v8)((v8u)p + ((v8u)km << 23));
#endif
}

// softplus(z) = max(z, 0) + log1p(e^-|z|), with log1p(e) = 2 atanh(e / (2 + e)) for e in (0, 1].
static inline v8 softplus(v8 z) {
    v8 az = z > splat(0.0f) ? z : -z;
    v8 e = exp2_neg(az * -1.44269504f);
    v8 s = e / (e + 2.0f), s2 = s * s;  // s <= 1/3: seven terms of the odd series reach float precision
    v8 q = splat(1.0f / 13);
    q = q * s2 + 1.0f / 11;
    q = q * s2 + 1.0f / 9;
    q = q * s2 + 1.0f / 7;
    q = q * s2 + 1.0f / 5;
    q = q * s2 + 1.0f / 3;
    q = q * s2 + 1.0f;
    v8 pos = z > splat(0.0f) ? z : splat(0.0f);
    return pos + 2.0f * s * q;
}

enum { TL = 128, MAX_STATE = 64 };  // TL: time steps per tile (three 8 x TL tiles stay in L1)

// The tl steps of one tile. CLAMP false: the caller has checked that every dt * A2 of the tile is above -126.
// pd, pu, py (or null): the next tile's first row in delta, u and y, fetched into the cache meanwhile.
template <int NS, bool CLAMP>
static inline void tile_steps(int n_rt, int tl, const v8 *Av_in, v8 *x_io, v8 Dv, const float (*dtile)[8],
                              const float (*utile)[8], float (*ytile)[8], const float *Bl, const float *Cl,
                              const float *pd, const float *pu, const float *py, long L, int lines) {
    const int n = NS ? NS : n_rt;
    // local copies: the stores to ytile could alias the caller's arrays (a vector aliases its element type)
    v8 Av[NS ? NS : MAX_STATE], x[NS ? NS : MAX_STATE];
    for (int k = 0; k < n; k++) Av[k] = Av_in[k], x[k] = x_io[k];
    for (int t = 0; t < tl; t++) {
        if (pd && t < 64 && (t & 7) < lines) {  // 8 rows x up to 8 lines, a line of each array per step
            const long off = (t >> 3) * L + (t & 7) * 16;
            __builtin_prefetch(pd + off, 0, 3);
            __builtin_prefetch(pu + off, 0, 3);
            __builtin_prefetch(py + off, 1, 3);
        }
        const v8 dt = load(dtile[t]), uv = load(utile[t]), du = dt * uv;
        v8 acc[4] = {Dv * uv, splat(0.0f), splat(0.0f), splat(0.0f)};  // partial sums: short chains
#pragma GCC unroll 64
        for (int k = 0; k < n; k++) {
            x[k] = exp2_neg<CLAMP>(dt * Av[k]) * x[k] + du * Bl[k];
            acc[k & 3] += x[k] * Cl[k];
        }
        v8 sum = (acc[0] + acc[1]) + (acc[2] + acc[3]);
        std::memcpy(ytile[t], &sum, 32);
        Bl += n, Cl += n;
    }
    for (int k = 0; k < n; k++) x_io[k] = x[k];
}

// Channels r0 .. r0 + cnt - 1 (cnt <= 8, one batch and group) over the whole sequence; rows up to r_end
// belong to this call (the prefetch stays inside them).
// NS: the state size when known at compile time (the inner loop is then fully unrolled), else 0.
template <int NS>
static void scan_block(int n_rt, const float *delta, const float *u, const float *A2, const float *D,
                       const float *bias, int softplus_on, float *y, long r0, int cnt, long r_end, long d,
                       long L, const float *Bb, const float *Cb) {
    const int n = NS ? NS : n_rt;
    v8 Av[NS ? NS : MAX_STATE], x[NS ? NS : MAX_STATE];
    float lanes[8] = {0}, amax[8] = {0};
    for (int k = 0; k < n; k++) {
        for (int j = 0; j < 8; j++) {
            lanes[j] = j < cnt ? A2[((r0 + j) % d) * n + k] : 0.0f;
            amax[j] = -lanes[j] > amax[j] ? -lanes[j] : amax[j];
        }
        Av[k] = load(lanes);
        x[k] = splat(0.0f);
    }
    // dt <= 125 / max |A2| in every lane keeps all of a step's dt * A2 above -126, rounding included
    for (int j = 0; j < 8; j++) lanes[j] = amax[j] > 0.0f ? 125.0f / amax[j] : 3.0e38f;
    const v8 dt_max = load(lanes);
    for (int j = 0; j < 8; j++) lanes[j] = j < cnt ? bias[(r0 + j) % d] : 0.0f;
    const v8 bv = load(lanes);
    for (int j = 0; j < 8; j++) lanes[j] = j < cnt ? D[(r0 + j) % d] : 0.0f;
    const v8 Dv = load(lanes);

    alignas(32) float dtile[TL][8], utile[TL][8], ytile[TL][8];
    for (long l0 = 0; l0 < L; l0 += TL) {
        const int tl = L - l0 < TL ? (int)(L - l0) : TL;
        // transpose the tile so that a step's 8 channels are one vector
        const int fast = cnt == 8 ? tl & ~7 : 0;  // whole 8 x 8 blocks go through registers
        for (int t = 0; t < fast; t += 8) {
            load_block(dtile + t, delta + r0 * L + l0 + t, L);
            load_block(utile + t, u + r0 * L + l0 + t, L);
        }
        for (int j = 0; j < 8; j++) {
            const float *dr = delta + (r0 + j) * L + l0, *ur = u + (r0 + j) * L + l0;
            for (int t = fast; t < tl; t++) {
                dtile[t][j] = j < cnt ? dr[t] : 0.0f;  // idle lanes: u = 0, so their state stays 0
                utile[t][j] = j < cnt ? ur[t] : 0.0f;
            }
        }
        // delta for the whole tile first, so that its long exp/divide chain is not on every step's path;
        // and whether a decay of the tile needs exp2_neg's clamp (almost never: then it is skipped)
        v8i ok = v8i{} - 1;
        for (int t = 0; t < tl; t++) {
            v8 z = load(dtile[t]) + bv;
            v8 dt = softplus_on ? softplus(z) : z;
            ok &= dt <= dt_max;  // false for a NaN too
            std::memcpy(dtile[t], &dt, 32);
        }
        bool clamp = false;
        for (int j = 0; j < 8; j++) clamp |= ok[j] == 0;
#if !defined(__AVX__)
        clamp = true;  // without OPAQUE the compiler may fuse dt * A2 into the exponent's adds: other bits
#endif
        // The rows of a block are L apart, and the hardware prefetchers leave most of each tile's lines to
        // be missed at the transposes: fetch the next tile's (the next block's first after the last tile)
        // while this one computes.
        const long nl0 = l0 + TL < L ? l0 + TL : 0, nr0 = l0 + TL < L ? r0 : r0 + 8;
        const float *pd = nullptr, *pu = nullptr, *py = nullptr;
        if (nr0 + 8 <= r_end) {  // (a partial block is not prefetched)
            pd = delta + nr0 * L + nl0, pu = u + nr0 * L + nl0, py = y + nr0 * L + nl0;
        }
        const int lines = (int)((L - nl0 + 15) / 16);  // those of the next tile's rows, up to 8 used
        const float *Bl = Bb + l0 * n, *Cl = Cb + l0 * n;
        if (clamp)
            tile_steps<NS, true>(n, tl, Av, x, Dv, dtile, utile, ytile, Bl, Cl, pd, pu, py, L, lines);
        else
            tile_steps<NS, false>(n, tl, Av, x, Dv, dtile, utile, ytile, Bl, Cl, pd, pu, py, L, lines);
        for (int t = 0; t < fast; t += 8) store_block(y + r0 * L + l0 + t, L, ytile + t);
        for (int j = 0; j < cnt; j++) {
            float *yr = y + (r0 + j) * L + l0;
            for (int t = fast; t < tl; t++) yr[t] = ytile[t][j];
        }
    }
}

// Rows r0 .. r1 - 1 of the (b * d) channels. Returns 0, or 1 if n is too large.
extern "C" int scan_rows(const float *delta, const float *u, const float *A2, const float *Bt, const float *Ct,
                         const float *D, const float *bias, int softplus_on, float *y, long r0, long r1,
                         long d, long g, long L, long n) {
    if (n < 1 || n > MAX_STATE) return 1;
    const long per_group = d / g;
    for (long r = r0; r < r1;) {
        const long bi = r / d, grp = (r % d) / per_group;
        const long group_end = bi * d + (grp + 1) * per_group;  // a block shares one B and C
        long end = r + 8;
        end = end < r1 ? end : r1;
        end = end < group_end ? end : group_end;
        const int cnt = (int)(end - r);
        const float *Bb = Bt + (bi * g + grp) * L * n, *Cb = Ct + (bi * g + grp) * L * n;
        if (n == 16)
            scan_block<16>(16, delta, u, A2, D, bias, softplus_on, y, r, cnt, r1, d, L, Bb, Cb);
        else
            scan_block<0>((int)n, delta, u, A2, D, bias, softplus_on, y, r, cnt, r1, d, L, Bb, Cb);
        r = end;
    }
    return 0;
}
