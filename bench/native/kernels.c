// The package's float32 algorithms compiled natively, to tell apart what the algorithm costs
// on this CPU from what WebAssembly and V8 add. Same structure as assembly/: the shift from
// the first rows, v = x − c and v² summed in f32 over blocks of 8 rows and folded into f64 (for
// rows of 4 KiB and more, and for inputs of 8 MiB and more, K rows a K-th of the input apart at
// a time into f32 partial sums of 16 rows, 32 beyond 8 MiB, as the package's loops do), then
// out = (x − c)·s + b; backward sums Σdout and Σdout·(x − c), then
// dx = a·((dout − m) − b·(x − c)). Vector width W (floats) is set at compile time: 4 is
// WebAssembly SIMD's 128 bits; 8 is AVX2, which WebAssembly does not have.
// Usage: kernels N D → "train <ns/elem> backward <ns/elem> error <e>" (medians of 15), after
// checking out and dx once against float64 batch norm (exit 1 if they differ by 1e-3 or more).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef W
#define W 4
#endif
typedef float vf __attribute__((vector_size(W * 4), aligned(4)));
#define AT(p) (*(const vf *)(p))
#define PUT(p, v) (*(vf *)(p) = (v))
enum { BLOCK = 8, HEAD = 8, ROW_BLOCK = 16, STREAM_BLOCK = 32, STREAM_BYTES = 8 << 20 };  // as in assembly/columns.ts

static void fold(double *acc, vf v) {
  for (int i = 0; i < W; i++) acc[i] += v[i];
}

/** s1 += Σ (x − c), s2 += Σ (x − c)² per column over blocks of rows; d a multiple of 2W. */
static void blockedSums(const float *x, int n, int d, const float *c, double *s1, double *s2) {
  for (int r0 = 0; r0 < n; r0 += BLOCK) {
    const int rows = n - r0 < BLOCK ? n - r0 : BLOCK;
    for (int k = 0; k < d; k += 2 * W) {
      const vf c0 = AT(c + k), c1 = AT(c + k + W);
      vf a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, b0 = {0}, b1 = {0}, b2 = {0}, b3 = {0};
      const float *p = x + (size_t)r0 * d + k;
      int r = 0;
      for (; r + 2 <= rows; r += 2, p += 2 * (size_t)d) {
        const vf v0 = AT(p) - c0, v1 = AT(p + W) - c1, v2 = AT(p + d) - c0, v3 = AT(p + d + W) - c1;
        a0 += v0, a1 += v1, a2 += v2, a3 += v3;
        b0 += v0 * v0, b1 += v1 * v1, b2 += v2 * v2, b3 += v3 * v3;
      }
      if (r < rows) {
        const vf v0 = AT(p) - c0, v1 = AT(p + W) - c1;
        a0 += v0, a1 += v1, b0 += v0 * v0, b1 += v1 * v1;
      }
      fold(s1 + k, a0 + a2), fold(s1 + k + W, a1 + a3), fold(s2 + k, b0 + b2), fold(s2 + k + W, b1 + b3);
    }
  }
}

/** The sums of blockedSums, four rows a quarter of the input apart at a time (the rows left: blocked). */
static void spreadSums(const float *x, int n, int d, const float *c, double *s1, double *s2, float *t1, float *t2, const int block) {
  const int runs = n / 4;
  const size_t far = (size_t)runs * d;
  for (int g0 = 0; g0 < runs; g0 += block / 4) {
    const int end = g0 + block / 4 < runs ? g0 + block / 4 : runs;
    memset(t1, 0, d * sizeof(float));
    memset(t2, 0, d * sizeof(float));
    for (int r = g0; r < end; r++) {
      const float *p = x + (size_t)r * d;
      for (int k = 0; k < d; k += W) {
        const vf ck = AT(c + k);
        const vf v0 = AT(p + k) - ck, v1 = AT(p + far + k) - ck, v2 = AT(p + 2 * far + k) - ck, v3 = AT(p + 3 * far + k) - ck;
        PUT(t1 + k, AT(t1 + k) + ((v0 + v1) + (v2 + v3)));
        PUT(t2 + k, AT(t2 + k) + ((v0 * v0 + v1 * v1) + (v2 * v2 + v3 * v3)));
      }
    }
    for (int k = 0; k < d; k++) s1[k] += t1[k], s2[k] += t2[k];
  }
  blockedSums(x + 4 * far, n - 4 * runs, d, c, s1, s2);
}

/** s1 = Σ (x − c), s2 = Σ (x − c)² per column, the loop the package takes for this shape. */
static void shiftedSums(const float *x, int n, int d, const float *c, double *s1, double *s2, float *t1, float *t2) {
  memset(s1, 0, d * sizeof(double));
  memset(s2, 0, d * sizeof(double));
  const size_t rowBytes = (size_t)d * sizeof(float), bytes = (size_t)n * rowBytes;
  const int stream = bytes >= STREAM_BYTES;
  if (rowBytes >= 4096 || (stream && rowBytes >= 1024)) spreadSums(x, n, d, c, s1, s2, t1, t2, stream ? STREAM_BLOCK : ROW_BLOCK);
  else blockedSums(x, n, d, c, s1, s2);
}

static void train(const float *x, int n, int d, float *c, float *s, float *b, double *s1, double *s2, float *t1, float *t2, float *out) {
  const int head = n < HEAD ? n : HEAD;
  memset(s1, 0, d * sizeof(double));
  memset(s2, 0, d * sizeof(double));
  blockedSums(x, head, d, x, s1, s2);
  for (int j = 0; j < d; j++) c[j] = (float)(x[j] + s1[j] / head);
  shiftedSums(x, n, d, c, s1, s2, t1, t2);
  for (int j = 0; j < d; j++) {
    const double m = s1[j] / n, var = fmax(s2[j] / n - m * m, 0.0);
    c[j] = (float)(c[j] + m);
    s[j] = (float)(1.0 / sqrt(var + 1e-5));
    b[j] = 0.0f;
  }
  for (int r = 0; r < n; r++) {
    const float *p = x + (size_t)r * d;
    float *o = out + (size_t)r * d;
    for (int k = 0; k < d; k += W) PUT(o + k, (AT(p + k) - AT(c + k)) * AT(s + k) + AT(b + k));
  }
}

/** s1 += Σ dout, s2 += Σ dout·(x − c) per column over blocks of rows. */
static void blockedGradientSums(const float *g, const float *x, int n, int d, const float *c, double *s1, double *s2) {
  for (int r0 = 0; r0 < n; r0 += BLOCK) {
    const int rows = n - r0 < BLOCK ? n - r0 : BLOCK;
    for (int k = 0; k < d; k += 2 * W) {
      const vf c0 = AT(c + k), c1 = AT(c + k + W);
      vf a0 = {0}, a1 = {0}, b0 = {0}, b1 = {0};
      size_t p = (size_t)r0 * d + k;
      int r = 0;
      for (; r + 2 <= rows; r += 2, p += 2 * (size_t)d) {
        const size_t q = p + d;
        const vf g0 = AT(g + p), g1 = AT(g + p + W), g2 = AT(g + q), g3 = AT(g + q + W);
        a0 += g0 + g2, a1 += g1 + g3;
        b0 += g0 * (AT(x + p) - c0) + g2 * (AT(x + q) - c0);
        b1 += g1 * (AT(x + p + W) - c1) + g3 * (AT(x + q + W) - c1);
      }
      if (r < rows) {
        const vf g0 = AT(g + p), g1 = AT(g + p + W);
        a0 += g0, a1 += g1, b0 += g0 * (AT(x + p) - c0), b1 += g1 * (AT(x + p + W) - c1);
      }
      fold(s1 + k, a0), fold(s1 + k + W, a1), fold(s2 + k, b0), fold(s2 + k + W, b1);
    }
  }
}

/** The sums of blockedGradientSums, K = 2 or 4 rows a K-th of the input apart at a time. */
static inline void spreadGradientSums(const float *g, const float *x, int n, int d, const float *c, double *s1, double *s2, float *t1,
                                      float *t2, const int K, const int block) {
  const int runs = n / K;
  const size_t far = (size_t)runs * d;
  for (int g0 = 0; g0 < runs; g0 += block / K) {
    const int end = g0 + block / K < runs ? g0 + block / K : runs;
    memset(t1, 0, d * sizeof(float));
    memset(t2, 0, d * sizeof(float));
    for (int r = g0; r < end; r++) {
      const size_t p = (size_t)r * d;
      for (int k = 0; k < d; k += W) {
        const vf ck = AT(c + k), g0v = AT(g + p + k), g1v = AT(g + p + far + k);
        vf a = g0v + g1v, b = g0v * (AT(x + p + k) - ck) + g1v * (AT(x + p + far + k) - ck);
        if (K == 4) {
          const size_t q = p + 2 * far;
          const vf g2v = AT(g + q + k), g3v = AT(g + q + far + k);
          a += g2v + g3v, b += g2v * (AT(x + q + k) - ck) + g3v * (AT(x + q + far + k) - ck);
        }
        PUT(t1 + k, AT(t1 + k) + a), PUT(t2 + k, AT(t2 + k) + b);
      }
    }
    for (int k = 0; k < d; k++) s1[k] += t1[k], s2[k] += t2[k];
  }
  blockedGradientSums(g + K * far, x + K * far, n - K * runs, d, c, s1, s2);
}

/** Compact-form dx for gamma = 1, with c and invStd as train left them; the sums as the package takes them. */
static void backward(const float *g, const float *x, int n, int d, const float *c, const float *invStd, float *A, float *M, float *B,
                     double *s1, double *s2, float *t1, float *t2, float *dx) {
  memset(s1, 0, d * sizeof(double));
  memset(s2, 0, d * sizeof(double));
  const size_t rowBytes = (size_t)d * sizeof(float);
  const int stream = (size_t)n * rowBytes >= STREAM_BYTES;
  const int block = stream ? STREAM_BLOCK : ROW_BLOCK;
  if ((!stream && rowBytes >= 4096) || rowBytes > 4096) spreadGradientSums(g, x, n, d, c, s1, s2, t1, t2, 4, block);
  else if (stream && rowBytes >= 256) spreadGradientSums(g, x, n, d, c, s1, s2, t1, t2, 2, block);
  else blockedGradientSums(g, x, n, d, c, s1, s2);
  for (int j = 0; j < d; j++) {
    const double inv = invStd[j];
    A[j] = (float)inv, M[j] = (float)(s1[j] / n), B[j] = (float)(s2[j] * inv * inv / n);
  }
  for (int r = 0; r < n; r++) {
    const size_t p = (size_t)r * d;
    for (int k = 0; k < d; k += W)
      PUT(dx + p + k, AT(A + k) * ((AT(g + p + k) - AT(M + k)) - AT(B + k) * (AT(x + p + k) - AT(c + k))));
  }
}

/** Largest |got − want| / max(1, |want|) over out and dx, against float64 batch norm (gamma 1, beta 0). */
static double check(const float *x, const float *g, const float *out, const float *dx, int n, int d) {
  double err = 0;
  for (int j = 0; j < d; j++) {
    double mean = 0, var = 0, sg = 0, sgx = 0;
    for (int r = 0; r < n; r++) mean += x[(size_t)r * d + j];
    mean /= n;
    for (int r = 0; r < n; r++) var += (x[(size_t)r * d + j] - mean) * (x[(size_t)r * d + j] - mean);
    const double inv = 1.0 / sqrt(var / n + 1e-5);
    for (int r = 0; r < n; r++) sg += g[(size_t)r * d + j], sgx += g[(size_t)r * d + j] * (x[(size_t)r * d + j] - mean) * inv;
    for (int r = 0; r < n; r++) {
      const size_t i = (size_t)r * d + j;
      const double xh = (x[i] - mean) * inv, want = xh, wantDx = inv / n * (n * g[i] - sg - xh * sgx);
      err = fmax(err, fabs(out[i] - want) / fmax(1.0, fabs(want)));
      err = fmax(err, fabs(dx[i] - wantDx) / fmax(1.0, fabs(wantDx)));
    }
  }
  return err;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e9 + t.tv_nsec;
}

static int byValue(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/** A float array of n values, 64-byte aligned plus `skew` bytes: the package's arrays sit apart modulo 4 KiB. */
static float *array(size_t n, size_t skew) {
  char *p = aligned_alloc(64, (n * sizeof(float) + skew + 63) / 64 * 64);
  if (!p) exit(2);
  return (float *)(p + skew);
}

int main(int argc, char **argv) {
  const int n = argc > 2 ? atoi(argv[1]) : 0, d = argc > 2 ? atoi(argv[2]) : 0;
  if (n < 1 || d < 1 || d % (2 * W)) {
    fprintf(stderr, "usage: kernels N D (D a multiple of %d)\n", 2 * W);
    return 2;
  }
  const size_t nd = (size_t)n * d;
  float *x = array(nd, 0), *g = array(nd, 1088), *out = array(nd, 2176), *dx = array(nd, 3264);
  float *c = array(d, 0), *s = array(d, 0), *b = array(d, 0), *A = array(d, 0), *M = array(d, 0), *B = array(d, 0);
  float *p1 = array(d, 0), *p2 = array(d, 0);
  double *s1 = malloc(d * sizeof(double)), *s2 = malloc(d * sizeof(double));
  srand(1);
  for (size_t i = 0; i < nd; i++) x[i] = 3.0f * rand() / RAND_MAX + 1.0f, g[i] = (float)rand() / RAND_MAX;
  train(x, n, d, c, s, b, s1, s2, p1, p2, out);
  backward(g, x, n, d, c, s, A, M, B, s1, s2, p1, p2, dx);
  const double err = check(x, g, out, dx, n, d);
  if (!(err < 1e-3)) {
    fprintf(stderr, "result differs from the float64 reference by %g\n", err);
    return 1;
  }
  const int reps = nd >= 20000000 ? 1 : (int)(20000000 / nd);
  double t[2][15];
  for (int k = 0; k < 15; k++) {
    const double t0 = now();
    for (int i = 0; i < reps; i++) train(x, n, d, c, s, b, s1, s2, p1, p2, out);
    const double t1 = now();
    for (int i = 0; i < reps; i++) backward(g, x, n, d, c, s, A, M, B, s1, s2, p1, p2, dx);
    const double t2 = now();
    t[0][k] = (t1 - t0) / reps / nd;
    t[1][k] = (t2 - t1) / reps / nd;
  }
  qsort(t[0], 15, sizeof(double), byValue);
  qsort(t[1], 15, sizeof(double), byValue);
  printf("train %.4f backward %.4f error %.2g\n", t[0][7], t[1][7], err);
  return 0;
}
