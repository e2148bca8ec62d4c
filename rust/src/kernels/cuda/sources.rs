//! CUDA C sources of the device kernels, compiled with NVRTC at first use
//! (`nvrtc`, to CUBIN).
//!
//! Kernels come in families; a family's module is compiled once per element
//! type (or element size, for the ones that only move bytes), so a process
//! compiles only what it runs. Every module starts with `COMMON`. Entry
//! points are `extern "C"` and named `<kernel>_<suffix>`:
//!
//! | family | suffixes | kernels |
//! |---|---|---|
//! | `Binary` | dtype but bool | `add_contig`, `add_bcast`, ... for add, sub, mul, div |
//! | `Unary` | float dtypes; ints (relu only) | `relu`, `gelu`, `gelu_tanh`, `silu`, `sigmoid`, `tanh`, `exp` |
//! | `Scale` | floats, i32, i64 | `scale` |
//! | `Rows` | float dtypes | `softmax`, `layernorm`, `rmsnorm` |
//! | `Reduce` | dtype but bool | `sum`, `max`, `argmax`; `mean` (floats) |
//! | `Cast` | source dtype | `cast_<src>_to_<dst>` for every dst |
//! | `Move` | element size `e1 e2 e4 e8` | `copy_strided`, `embedding_i32`, `embedding_i64` |
//! | `IntMatmul` | i32, i64 | `matmul` (floats go through cuBLAS) |
//!
//! Semantics are the CPU kernels' (docs/ABI.md, "Ops"): integers wrap,
//! integer `div` truncates and `x / 0` is 0, float to integer casts truncate
//! and saturate (NaN is 0), NaN propagates through `max`, `argmax` finds the
//! first maximum or the first NaN, `sum` of f32/f16/bf16 and the statistics
//! of `layernorm`/`rmsnorm` accumulate in f64.

use crate::tensor::DType;

/// Launch geometry every row kernel (`Rows`, `Reduce`) assumes.
pub const BLOCK: u32 = 256;

/// Every module's preamble: element types, numeric traits, index helpers.
pub const COMMON: &str = r#"
typedef long long i64;
typedef unsigned long long u64;
#define MAXD 16
#define BLOCK 256
#define NEG_INF __int_as_float(0xff800000)
#define CAT2(a, b) a##_##b
#define CAT(a, b) CAT2(a, b)
#define GRID_LOOP(i, n) \
  for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
       i += (i64)gridDim.x * blockDim.x)

// A broadcast or strided walk: the output (or destination) index i is
// split over dims, row-major; s0 and s1 are two operands' element strides.
struct Strides {
  int ndim;
  i64 dims[MAXD];
  i64 s0[MAXD];
  i64 s1[MAXD];
};

__device__ __forceinline__ void offsets(i64 i, const Strides& s, i64* o0, i64* o1) {
  i64 a = 0, b = 0;
  for (int d = s.ndim - 1; d >= 0; --d) {
    i64 k = i % s.dims[d];
    i /= s.dims[d];
    a += k * s.s0[d];
    b += k * s.s1[d];
  }
  *o0 = a;
  *o1 = b;
}

// Half-precision storage without the toolkit's headers (NVRTC alone
// compiles these modules): conversions are PTX instructions (f16) and
// round-to-nearest-even on the bits (bf16), as cuda_bf16.h does.
struct f16_t { unsigned short x; };
struct bf16_t { unsigned short x; };
__device__ __forceinline__ float f16_to_f32(f16_t h) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h.x));
  return f;
}
__device__ __forceinline__ f16_t f32_to_f16(float f) {
  f16_t h;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h.x) : "f"(f));
  return h;
}
__device__ __forceinline__ f16_t f64_to_f16(double f) {
  f16_t h;
  asm("cvt.rn.f16.f64 %0, %1;" : "=h"(h.x) : "d"(f));
  return h;
}
__device__ __forceinline__ float bf16_to_f32(bf16_t b) {
  return __uint_as_float(((unsigned int)b.x) << 16);
}
__device__ __forceinline__ bf16_t f32_to_bf16(float f) {
  unsigned int u = __float_as_uint(f);
  bf16_t b;
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    b.x = (unsigned short)((u >> 16) | 0x40u);  // NaN stays a (quiet) NaN
  } else {
    u += 0x7fffu + ((u >> 16) & 1u);
    b.x = (unsigned short)(u >> 16);
  }
  return b;
}

// Num<T>: the type arithmetic runs in (A) and the load/store to it.
template <typename T> struct Num {
  typedef T A;
  __device__ static __forceinline__ T ld(T x) { return x; }
  __device__ static __forceinline__ T st(T x) { return x; }
};
template <> struct Num<f16_t> {
  typedef float A;
  __device__ static __forceinline__ float ld(f16_t x) { return f16_to_f32(x); }
  __device__ static __forceinline__ f16_t st(float x) { return f32_to_f16(x); }
};
template <> struct Num<bf16_t> {
  typedef float A;
  __device__ static __forceinline__ float ld(bf16_t x) { return bf16_to_f32(x); }
  __device__ static __forceinline__ bf16_t st(float x) { return f32_to_bf16(x); }
};

// NaN-aware maximum: NaN wins and stays.
template <typename A> __device__ __forceinline__ A nan_max(A a, A b) {
  return (a != a || a >= b) ? a : b;
}

// Shared-memory tree reductions over one block of BLOCK threads.
template <typename A> __device__ A block_sum(A v, A* sh) {
  int t = threadIdx.x;
  sh[t] = v;
  __syncthreads();
  for (int s = BLOCK / 2; s > 0; s >>= 1) {
    if (t < s) sh[t] = sh[t] + sh[t + s];
    __syncthreads();
  }
  A r = sh[0];
  __syncthreads();
  return r;
}

template <typename A> __device__ A block_max(A v, A* sh) {
  int t = threadIdx.x;
  sh[t] = v;
  __syncthreads();
  for (int s = BLOCK / 2; s > 0; s >>= 1) {
    if (t < s) sh[t] = nan_max(sh[t], sh[t + s]);
    __syncthreads();
  }
  A r = sh[0];
  __syncthreads();
  return r;
}
"#;

/// The element-type preamble of a module: `T`, its arithmetic type `A`,
/// and what kind of number it is.
fn dtype_defines(d: DType) -> String {
    let (ty, min, max) = c_type(d);
    let float = i32::from(d.is_float());
    let signed = i32::from(!matches!(d, DType::U8 | DType::Bool));
    format!(
        "typedef {ty} T;\ntypedef Num<T>::A A;\n#define SUF {}\n#define IS_FLOAT {float}\n\
         #define IS_SIGNED {signed}\n#define IS_F64 {}\n#define T_MIN {min}\n#define T_MAX {max}\n",
        d.name(),
        i32::from(d == DType::F64),
    )
}

/// The C type of a dtype's elements, and its range as C literals ("0" for
/// floats, whose range no kernel uses).
fn c_type(d: DType) -> (&'static str, &'static str, &'static str) {
    match d {
        DType::F32 => ("float", "0", "0"),
        DType::F64 => ("double", "0", "0"),
        DType::F16 => ("f16_t", "0", "0"),
        DType::BF16 => ("bf16_t", "0", "0"),
        DType::I32 => ("int", "(-2147483647 - 1)", "2147483647"),
        DType::I64 => (
            "long long",
            "(-9223372036854775807LL - 1)",
            "9223372036854775807LL",
        ),
        DType::U8 | DType::Bool => ("unsigned char", "0", "255"),
        DType::I8 => ("signed char", "(-128)", "127"),
    }
}

/// A kernel family: one module per element type (or size).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    Binary,
    Unary,
    Scale,
    Rows,
    Reduce,
    Cast,
    Move,
    IntMatmul,
}

impl Family {
    pub const ALL: [Family; 8] = [
        Family::Binary,
        Family::Unary,
        Family::Scale,
        Family::Rows,
        Family::Reduce,
        Family::Cast,
        Family::Move,
        Family::IntMatmul,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Family::Binary => "binary",
            Family::Unary => "unary",
            Family::Scale => "scale",
            Family::Rows => "rows",
            Family::Reduce => "reduce",
            Family::Cast => "cast",
            Family::Move => "move",
            Family::IntMatmul => "int_matmul",
        }
    }

    /// The element types a family's module exists for (`Move` is by size:
    /// U8, I8... stand for e1, F16 for e2, F32 for e4, F64 for e8).
    pub fn dtypes(self) -> &'static [DType] {
        const NOT_BOOL: &[DType] = &[
            DType::F32,
            DType::F16,
            DType::BF16,
            DType::F64,
            DType::I32,
            DType::I64,
            DType::U8,
            DType::I8,
        ];
        const FLOATS: &[DType] = &[DType::F32, DType::F16, DType::BF16, DType::F64];
        match self {
            Family::Binary | Family::Reduce => NOT_BOOL,
            Family::Unary => NOT_BOOL,
            Family::Scale => &[
                DType::F32,
                DType::F16,
                DType::BF16,
                DType::F64,
                DType::I32,
                DType::I64,
            ],
            Family::Rows => FLOATS,
            Family::Cast => &DType::ALL,
            Family::Move => &[DType::U8, DType::F16, DType::F32, DType::F64],
            Family::IntMatmul => &[DType::I32, DType::I64],
        }
    }
}

/// `e1`, `e2`, `e4` or `e8`: the `Move` module for elements of `size` bytes.
pub fn size_suffix(size: usize) -> &'static str {
    match size {
        1 => "e1",
        2 => "e2",
        4 => "e4",
        _ => "e8",
    }
}

/// The full source of `family`'s module for `d` (None: no such module).
pub fn module_source(family: Family, d: DType) -> Option<String> {
    if !family.dtypes().contains(&d) {
        return None;
    }
    let body = match family {
        Family::Binary => BINARY,
        Family::Unary => {
            if d.is_float() {
                UNARY_FLOAT
            } else {
                UNARY_INT
            }
        }
        Family::Scale => SCALE,
        Family::Rows => ROWS,
        Family::Reduce => {
            if d.is_float() {
                REDUCE_FLOAT
            } else {
                REDUCE_INT
            }
        }
        Family::Cast => return Some(cast_source(d)),
        Family::Move => return Some(move_source(d.size())),
        Family::IntMatmul => INT_MATMUL,
    };
    Some(format!("{COMMON}{}{body}", dtype_defines(d)))
}

const BINARY: &str = r#"
__device__ __forceinline__ T op_add(T a, T b) {
#if IS_FLOAT
  return Num<T>::st(Num<T>::ld(a) + Num<T>::ld(b));
#else
  return (T)((u64)(i64)a + (u64)(i64)b);
#endif
}
__device__ __forceinline__ T op_sub(T a, T b) {
#if IS_FLOAT
  return Num<T>::st(Num<T>::ld(a) - Num<T>::ld(b));
#else
  return (T)((u64)(i64)a - (u64)(i64)b);
#endif
}
__device__ __forceinline__ T op_mul(T a, T b) {
#if IS_FLOAT
  return Num<T>::st(Num<T>::ld(a) * Num<T>::ld(b));
#else
  return (T)((u64)(i64)a * (u64)(i64)b);
#endif
}
__device__ __forceinline__ T op_div(T a, T b) {
#if IS_FLOAT
  return Num<T>::st(Num<T>::ld(a) / Num<T>::ld(b));
#else
  if (b == (T)0) return (T)0;
#if IS_SIGNED
  // T_MIN / -1 overflows: it wraps, like the CPU kernels.
  if (b == (T)-1) return (T)((u64)0 - (u64)(i64)a);
#endif
  return (T)(a / b);
#endif
}
#define BIN(name)                                                            \
  extern "C" __global__ void CAT(name##_contig, SUF)(                        \
      const T* a, const T* b, T* o, i64 n) {                                 \
    GRID_LOOP(i, n) o[i] = op_##name(a[i], b[i]);                            \
  }                                                                          \
  extern "C" __global__ void CAT(name##_bcast, SUF)(                         \
      const T* a, const T* b, T* o, i64 n, Strides s) {                      \
    GRID_LOOP(i, n) {                                                        \
      i64 x, y;                                                              \
      offsets(i, s, &x, &y);                                                 \
      o[i] = op_##name(a[x], b[y]);                                          \
    }                                                                        \
  }
BIN(add)
BIN(sub)
BIN(mul)
BIN(div)
"#;

const UNARY_FLOAT: &str = r#"
__device__ __forceinline__ A u_relu(A x) { return (x > (A)0 || x != x) ? x : (A)0; }
__device__ __forceinline__ A u_gelu(A x) {
  return (A)0.5 * x * ((A)1 + erf(x * (A)0.70710678118654752440));
}
__device__ __forceinline__ A u_gelu_tanh(A x) {
  return (A)0.5 * x * ((A)1 + tanh((A)0.79788456080286535588 * (x + (A)0.044715 * x * x * x)));
}
__device__ __forceinline__ A u_sigmoid(A x) { return (A)1 / ((A)1 + exp(-x)); }
__device__ __forceinline__ A u_silu(A x) { return x / ((A)1 + exp(-x)); }
__device__ __forceinline__ A u_tanh(A x) { return tanh(x); }
__device__ __forceinline__ A u_exp(A x) { return exp(x); }
#define UN(name)                                                             \
  extern "C" __global__ void CAT(name, SUF)(const T* x, T* o, i64 n) {       \
    GRID_LOOP(i, n) o[i] = Num<T>::st(u_##name(Num<T>::ld(x[i])));           \
  }
UN(relu)
UN(gelu)
UN(gelu_tanh)
UN(sigmoid)
UN(silu)
UN(tanh)
UN(exp)
"#;

const UNARY_INT: &str = r#"
extern "C" __global__ void CAT(relu, SUF)(const T* x, T* o, i64 n) {
  GRID_LOOP(i, n) o[i] = x[i] > (T)0 ? x[i] : (T)0;
}
"#;

const SCALE: &str = r#"
extern "C" __global__ void CAT(scale, SUF)(const T* x, T* o, i64 n, double factor) {
#if IS_FLOAT
#if IS_F64
  const A f = (A)factor;
#else
  // f32, f16 and bf16 multiply by the factor rounded to f32.
  const A f = (A)(float)factor;
#endif
  GRID_LOOP(i, n) o[i] = Num<T>::st(Num<T>::ld(x[i]) * f);
#else
  // Integers: in f64, truncated toward zero, saturated (NaN is 0).
  GRID_LOOP(i, n) {
    double r = trunc((double)x[i] * factor);
    o[i] = r != r ? (T)0 : r <= (double)T_MIN ? (T)T_MIN : r >= (double)T_MAX ? (T)T_MAX : (T)r;
  }
#endif
}
"#;

const ROWS: &str = r#"
// softmax over an axis: rows are (outer, inner) pairs, `len` elements apart
// by `inner`; one block per row.
extern "C" __global__ void CAT(softmax, SUF)(const T* x, T* y, i64 rows, i64 len, i64 inner) {
  __shared__ A sh[BLOCK];
  for (i64 row = blockIdx.x; row < rows; row += gridDim.x) {
    const i64 base = (row / inner) * len * inner + row % inner;
    A m = (A)NEG_INF;
    for (i64 j = threadIdx.x; j < len; j += BLOCK) m = nan_max(m, Num<T>::ld(x[base + j * inner]));
    m = block_max(m, sh);
    A s = (A)0;
    for (i64 j = threadIdx.x; j < len; j += BLOCK) s += exp(Num<T>::ld(x[base + j * inner]) - m);
    s = block_sum(s, sh);
    for (i64 j = threadIdx.x; j < len; j += BLOCK)
      y[base + j * inner] = Num<T>::st(exp(Num<T>::ld(x[base + j * inner]) - m) / s);
  }
}

// layernorm over the last axis (biased variance, statistics in f64);
// gamma and beta may be null.
extern "C" __global__ void CAT(layernorm, SUF)(const T* x, const T* gamma, const T* beta, T* y,
                                               i64 rows, i64 len, double eps) {
  __shared__ double sh[BLOCK];
  for (i64 row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* xr = x + row * len;
    T* yr = y + row * len;
    double s = 0;
    for (i64 j = threadIdx.x; j < len; j += BLOCK) s += (double)Num<T>::ld(xr[j]);
    const double mean = block_sum(s, sh) / (double)len;
    double v = 0;
    for (i64 j = threadIdx.x; j < len; j += BLOCK) {
      const double d = (double)Num<T>::ld(xr[j]) - mean;
      v += d * d;
    }
    const double inv = 1.0 / sqrt(block_sum(v, sh) / (double)len + eps);
    for (i64 j = threadIdx.x; j < len; j += BLOCK) {
      double r = ((double)Num<T>::ld(xr[j]) - mean) * inv;
      if (gamma) r *= (double)Num<T>::ld(gamma[j]);
      if (beta) r += (double)Num<T>::ld(beta[j]);
      yr[j] = Num<T>::st((A)r);
    }
  }
}

// rmsnorm over the last axis: x / sqrt(mean(x^2) + eps) * gamma.
extern "C" __global__ void CAT(rmsnorm, SUF)(const T* x, const T* gamma, T* y, i64 rows, i64 len,
                                             double eps) {
  __shared__ double sh[BLOCK];
  for (i64 row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* xr = x + row * len;
    T* yr = y + row * len;
    double s = 0;
    for (i64 j = threadIdx.x; j < len; j += BLOCK) {
      const double v = (double)Num<T>::ld(xr[j]);
      s += v * v;
    }
    const double inv = 1.0 / sqrt(block_sum(s, sh) / (double)len + eps);
    for (i64 j = threadIdx.x; j < len; j += BLOCK) {
      double r = (double)Num<T>::ld(xr[j]) * inv;
      if (gamma) r *= (double)Num<T>::ld(gamma[j]);
      yr[j] = Num<T>::st((A)r);
    }
  }
}
"#;

/// Reductions over an axis: outputs are (outer, inner) pairs, one block
/// each, reading `len` elements `inner` apart. `len` is at least 1 for
/// `max` and `argmax` (an empty axis is refused before launch).
const REDUCE_FLOAT: &str = r#"
// sum and mean: an f64 sum, then FINISH(s) is stored.
#define SUM_LIKE(name, FINISH)                                                          \
  extern "C" __global__ void CAT(name, SUF)(const T* x, T* o, i64 outs, i64 len, i64 inner) { \
    __shared__ double sh[BLOCK];                                                        \
    for (i64 r = blockIdx.x; r < outs; r += gridDim.x) {                                \
      const i64 base = (r / inner) * len * inner + r % inner;                           \
      double s = 0;                                                                     \
      for (i64 j = threadIdx.x; j < len; j += BLOCK)                                    \
        s += (double)Num<T>::ld(x[base + j * inner]);                                   \
      s = block_sum(s, sh);                                                             \
      if (threadIdx.x == 0) o[r] = Num<T>::st((A)(FINISH));                             \
    }                                                                                   \
  }
SUM_LIKE(sum, s)
SUM_LIKE(mean, s / (double)len)
extern "C" __global__ void CAT(max, SUF)(const T* x, T* o, i64 outs, i64 len, i64 inner) {
  __shared__ A sh[BLOCK];
  for (i64 r = blockIdx.x; r < outs; r += gridDim.x) {
    const i64 base = (r / inner) * len * inner + r % inner;
    A m = (A)NEG_INF;
    for (i64 j = threadIdx.x; j < len; j += BLOCK) m = nan_max(m, Num<T>::ld(x[base + j * inner]));
    m = block_max(m, sh);
    if (threadIdx.x == 0) o[r] = Num<T>::st(m);
  }
}
// The first maximum, or the first NaN: each thread keeps its best
// (value, index); the block keeps the better of two, the lower index on ties.
extern "C" __global__ void CAT(argmax, SUF)(const T* x, i64* o, i64 outs, i64 len, i64 inner) {
  __shared__ A sv[BLOCK];
  __shared__ i64 si[BLOCK];
  for (i64 r = blockIdx.x; r < outs; r += gridDim.x) {
    const i64 base = (r / inner) * len * inner + r % inner;
    A best = (A)NEG_INF;
    i64 at = -1;
    for (i64 j = threadIdx.x; j < len; j += BLOCK) {
      const A v = Num<T>::ld(x[base + j * inner]);
      const bool best_nan = best != best;
      if (!best_nan && (v != v || v > best || at < 0)) {
        best = v;
        at = j;
      }
    }
    const int t = threadIdx.x;
    sv[t] = best;
    si[t] = at;
    __syncthreads();
    for (int s = BLOCK / 2; s > 0; s >>= 1) {
      if (t < s && si[t + s] >= 0) {
        const A a = sv[t], b = sv[t + s];
        const i64 ia = si[t], ib = si[t + s];
        const bool an = a != a, bn = b != b;
        bool take;
        if (ia < 0) take = true;
        else if (an || bn) take = bn && (!an || ib < ia);
        else take = b > a || (b == a && ib < ia);
        if (take) {
          sv[t] = b;
          si[t] = ib;
        }
      }
      __syncthreads();
    }
    if (t == 0) o[r] = si[0];
    __syncthreads();
  }
}
"#;

const REDUCE_INT: &str = r#"
extern "C" __global__ void CAT(sum, SUF)(const T* x, T* o, i64 outs, i64 len, i64 inner) {
  __shared__ u64 sh[BLOCK];
  for (i64 r = blockIdx.x; r < outs; r += gridDim.x) {
    const i64 base = (r / inner) * len * inner + r % inner;
    u64 s = 0;
    for (i64 j = threadIdx.x; j < len; j += BLOCK) s += (u64)(i64)x[base + j * inner];
    s = block_sum(s, sh);
    if (threadIdx.x == 0) o[r] = (T)s;
  }
}
extern "C" __global__ void CAT(max, SUF)(const T* x, T* o, i64 outs, i64 len, i64 inner) {
  __shared__ T sh[BLOCK];
  for (i64 r = blockIdx.x; r < outs; r += gridDim.x) {
    const i64 base = (r / inner) * len * inner + r % inner;
    T m = (T)T_MIN;
    for (i64 j = threadIdx.x; j < len; j += BLOCK) m = nan_max(m, x[base + j * inner]);
    m = block_max(m, sh);
    if (threadIdx.x == 0) o[r] = m;
  }
}
extern "C" __global__ void CAT(argmax, SUF)(const T* x, i64* o, i64 outs, i64 len, i64 inner) {
  __shared__ T sv[BLOCK];
  __shared__ i64 si[BLOCK];
  for (i64 r = blockIdx.x; r < outs; r += gridDim.x) {
    const i64 base = (r / inner) * len * inner + r % inner;
    T best = (T)T_MIN;
    i64 at = -1;
    for (i64 j = threadIdx.x; j < len; j += BLOCK) {
      const T v = x[base + j * inner];
      if (at < 0 || v > best) {
        best = v;
        at = j;
      }
    }
    const int t = threadIdx.x;
    sv[t] = best;
    si[t] = at;
    __syncthreads();
    for (int s = BLOCK / 2; s > 0; s >>= 1) {
      if (t < s && si[t + s] >= 0) {
        const bool take = si[t] < 0 || sv[t + s] > sv[t] || (sv[t + s] == sv[t] && si[t + s] < si[t]);
        if (take) {
          sv[t] = sv[t + s];
          si[t] = si[t + s];
        }
      }
      __syncthreads();
    }
    if (t == 0) o[r] = si[0];
    __syncthreads();
  }
}
"#;

const INT_MATMUL: &str = r#"
// c[b] = a[b] @ b[b] for row-major [m, k] x [k, n]; batch strides in
// elements (0 broadcasts one matrix over the batch). Products wrap.
extern "C" __global__ void CAT(matmul, SUF)(const T* a, const T* b, T* c, i64 batch, i64 m, i64 k,
                                            i64 n, i64 sa, i64 sb) {
  GRID_LOOP(idx, batch * m * n) {
    const i64 bi = idx / (m * n), rem = idx % (m * n), i = rem / n, j = rem % n;
    const T* ar = a + bi * sa + i * k;
    const T* bc = b + bi * sb + j;
    u64 s = 0;
    for (i64 p = 0; p < k; ++p) s += (u64)(i64)ar[p] * (u64)(i64)bc[p * n];
    c[idx] = (T)s;
  }
}
"#;

/// `cast_<src>_to_<dst>` for every dst, in the module of `src`.
fn cast_source(src: DType) -> String {
    let mut s = format!("{COMMON}{}", dtype_defines(src));
    // The source value: a double for floats, an i64 for integers and bool.
    let load = if src.is_float() {
        "const double v = (double)Num<T>::ld(x[i]);"
    } else if src == DType::Bool {
        "const i64 v = x[i] != 0;"
    } else {
        "const i64 v = (i64)x[i];"
    };
    for dst in DType::ALL {
        let (ty, min, max) = c_type(dst);
        let conv = match dst {
            DType::F32 | DType::F64 => format!("({ty})v"),
            DType::F16 => "f64_to_f16((double)v)".to_owned(),
            DType::BF16 => "f32_to_bf16((float)v)".to_owned(),
            DType::Bool => "(unsigned char)(v != 0)".to_owned(),
            // Truncate toward zero and saturate; NaN is 0.
            _ if src.is_float() => format!(
                "v != v ? ({ty})0 : v <= (double){min} ? ({ty}){min} : \
                 v >= (double){max} ? ({ty}){max} : ({ty})(i64)trunc(v)"
            ),
            // Integers keep the low bits.
            _ => format!("({ty})(u64)v"),
        };
        s.push_str(&format!(
            "extern \"C\" __global__ void cast_{}_to_{}(const T* x, {ty}* o, i64 n) {{\n  \
             GRID_LOOP(i, n) {{\n    {load}\n    o[i] = {conv};\n  }}\n}}\n",
            src.name(),
            dst.name(),
        ));
    }
    s
}

/// Byte movers for elements of `size` bytes: strided copies (gathers,
/// concat placement, broadcasts) and embedding lookups.
fn move_source(size: usize) -> String {
    let ty = match size {
        1 => "unsigned char",
        2 => "unsigned short",
        4 => "unsigned int",
        _ => "unsigned long long",
    };
    format!(
        "{COMMON}typedef {ty} E;\n#define SUF {}\n{MOVE}",
        size_suffix(size)
    )
}

const MOVE: &str = r#"
// dst[s1 walk] = src[s0 walk] over the shape in s (n elements).
extern "C" __global__ void CAT(copy_strided, SUF)(const E* src, E* dst, i64 n, Strides s) {
  GRID_LOOP(i, n) {
    i64 a, b;
    offsets(i, s, &a, &b);
    dst[b] = src[a];
  }
}
// out[i, :] = table[ids[i], :]; an id outside 0..rows sets *bad and its row is zeros.
#define EMB(I, name)                                                          \
  extern "C" __global__ void CAT(name, SUF)(const E* table, const I* ids, E* out, i64 nids,     \
                                            i64 rows, i64 dim, int* bad) {                      \
    GRID_LOOP(i, nids * dim) {                                                \
      const i64 r = (i64)ids[i / dim];                                        \
      if (r < 0 || r >= rows) {                                               \
        *bad = 1;                                                             \
        out[i] = (E)0;                                                        \
      } else {                                                                \
        out[i] = table[r * dim + i % dim];                                    \
      }                                                                       \
    }                                                                         \
  }
EMB(int, embedding_i32)
EMB(long long, embedding_i64)
"#;

/// The entry points of `family`'s module for `d`, for checks and preloading.
pub fn entry_points(family: Family, d: DType) -> Vec<String> {
    let suf = if family == Family::Move {
        size_suffix(d.size()).to_owned()
    } else {
        d.name().to_owned()
    };
    let names: Vec<String> = match family {
        Family::Binary => ["add", "sub", "mul", "div"]
            .iter()
            .flat_map(|op| [format!("{op}_contig"), format!("{op}_bcast")])
            .collect(),
        Family::Unary if d.is_float() => [
            "relu",
            "gelu",
            "gelu_tanh",
            "sigmoid",
            "silu",
            "tanh",
            "exp",
        ]
        .map(String::from)
        .to_vec(),
        Family::Unary => vec!["relu".into()],
        Family::Scale => vec!["scale".into()],
        Family::Rows => ["softmax", "layernorm", "rmsnorm"]
            .map(String::from)
            .to_vec(),
        Family::Reduce if d.is_float() => {
            ["sum", "mean", "max", "argmax"].map(String::from).to_vec()
        }
        Family::Reduce => ["sum", "max", "argmax"].map(String::from).to_vec(),
        Family::Cast => {
            return DType::ALL
                .iter()
                .map(|dst| format!("cast_{}_to_{}", d.name(), dst.name()))
                .collect();
        }
        Family::Move => ["copy_strided", "embedding_i32", "embedding_i64"]
            .map(String::from)
            .to_vec(),
        Family::IntMatmul => vec!["matmul".into()],
    };
    names.into_iter().map(|n| format!("{n}_{suf}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_names_its_entry_points() {
        for family in Family::ALL {
            for &d in family.dtypes() {
                let src = module_source(family, d).unwrap();
                for entry in entry_points(family, d) {
                    // Generated names appear literally; macro-made ones by their parts.
                    let stem = entry
                        .rsplit_once('_')
                        .map_or(entry.as_str(), |(stem, _)| stem);
                    let stem = stem.trim_end_matches("_contig").trim_end_matches("_bcast");
                    assert!(
                        src.contains(&entry) || src.contains(stem),
                        "{} {}: {entry}",
                        family.name(),
                        d.name()
                    );
                }
            }
        }
        assert!(module_source(Family::Rows, DType::I32).is_none());
    }
}
