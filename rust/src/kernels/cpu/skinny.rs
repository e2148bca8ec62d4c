//! `y = x · Wᵀ` for short `x` (few rows) and row-major `W`, the shape of
//! inference-time `linear` layers. General GEMM kernels pack both operands
//! and split work for square products; here every output is a dot product
//! of two contiguous rows, so the kernel streams `W` once, keeps a block of
//! `x` rows in cache, and splits `W`'s rows across threads.
//!
//! The inner block (4 rows of `x` × 2 rows of `W`, 8 lanes each) is written
//! as plain arrays and compiled inside `#[target_feature(avx2, fma)]`
//! functions, so LLVM turns it into 8 FMA accumulators; it is used only when
//! the CPU has those features.

use rayon::prelude::*;

use super::util::SendPtr;

/// Rows of `x` at most for which this kernel beats general GEMM.
pub const MAX_ROWS: usize = 64;
/// Shortest dot product worth the setup.
pub const MIN_K: usize = 64;
/// Rows of `W` per parallel task.
const BAND: usize = 64;

pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `out[i][j] (+)= dot(x[i], w[j])` for i < m, j < n; rows of length k.
///
/// # Safety
/// `x` holds m rows at stride `xs`, `w` n rows at stride `ws`, `out` m rows
/// of n at stride `n`, all valid; `available()` returned true.
#[allow(clippy::too_many_arguments)]
pub unsafe fn linear_f32(
    x: *const f32,
    xs: usize,
    m: usize,
    w: *const f32,
    ws: usize,
    n: usize,
    k: usize,
    out: *mut f32,
    accumulate: bool,
) {
    let (xp, wp, op) = (SendPtr(x as *mut f32), SendPtr(w as *mut f32), SendPtr(out));
    (0..n.div_ceil(BAND)).into_par_iter().for_each(|b| {
        let j0 = b * BAND;
        let j1 = (j0 + BAND).min(n);
        // SAFETY: forwarded; each task writes columns j0..j1 only.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            band_avx2(
                xp.get(),
                xs,
                m,
                wp.get(),
                ws,
                n,
                j0,
                j1,
                k,
                op.get(),
                accumulate,
            )
        };
    });
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
unsafe fn band_avx2(
    x: *const f32,
    xs: usize,
    m: usize,
    w: *const f32,
    ws: usize,
    n: usize,
    j0: usize,
    j1: usize,
    k: usize,
    out: *mut f32,
    accumulate: bool,
) {
    let mut j = j0;
    while j < j1 {
        let q = (j1 - j).min(2);
        let mut i = 0;
        while i < m {
            let r = (m - i).min(4);
            // SAFETY: rows i..i+r of x and j..j+q of w are in bounds.
            unsafe {
                let sums: [[f32; 2]; 4] = match (r, q) {
                    (4, 2) => block::<4, 2>(x.add(i * xs), xs, w.add(j * ws), ws, k),
                    _ => {
                        let mut s = [[0f32; 2]; 4];
                        for a in 0..r {
                            for c in 0..q {
                                s[a][c] = block::<1, 1>(
                                    x.add((i + a) * xs),
                                    xs,
                                    w.add((j + c) * ws),
                                    ws,
                                    k,
                                )[0][0];
                            }
                        }
                        s
                    }
                };
                for a in 0..r {
                    for c in 0..q {
                        let o = out.add((i + a) * n + j + c);
                        *o = if accumulate {
                            *o + sums[a][c]
                        } else {
                            sums[a][c]
                        };
                    }
                }
            }
            i += r;
        }
        j += q;
    }
}

/// Dot products of R (≤ 4) rows of x with Q (≤ 2) rows of w, eight lanes
/// per FMA, R·Q ymm accumulators.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
#[allow(clippy::needless_range_loop)]
unsafe fn block<const R: usize, const Q: usize>(
    x: *const f32,
    xs: usize,
    w: *const f32,
    ws: usize,
    k: usize,
) -> [[f32; 2]; 4] {
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_ps(); 2]; 4];
    let k8 = k / 8 * 8;
    let mut c = 0;
    while c < k8 {
        // SAFETY: c + 8 <= k within every row read.
        unsafe {
            let w0 = _mm256_loadu_ps(w.add(c));
            let w1 = if Q > 1 {
                _mm256_loadu_ps(w.add(ws + c))
            } else {
                w0
            };
            for r in 0..R {
                let xv = _mm256_loadu_ps(x.add(r * xs + c));
                acc[r][0] = _mm256_fmadd_ps(xv, w0, acc[r][0]);
                if Q > 1 {
                    acc[r][1] = _mm256_fmadd_ps(xv, w1, acc[r][1]);
                }
            }
        }
        c += 8;
    }
    let mut out = [[0f32; 2]; 4];
    for r in 0..R {
        for q in 0..Q {
            let mut lanes = [0f32; 8];
            // SAFETY: storing 8 lanes into an 8-element array.
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc[r][q]) };
            let mut s = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5]))
                + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
            for t in k8..k {
                // SAFETY: t < k within both rows.
                s = unsafe { (*x.add(r * xs + t)).mul_add(*w.add(q * ws + t), s) };
            }
            out[r][q] = s;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_naive_dot_products() {
        if !available() {
            return;
        }
        for &(m, n, k) in &[
            (1, 1, 64),
            (5, 3, 67),
            (4, 2, 64),
            (33, 130, 200),
            (64, 65, 1031),
        ] {
            let x: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0)
                .collect();
            let w: Vec<f32> = (0..n * k)
                .map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0)
                .collect();
            let mut out = vec![1f32; m * n];
            // SAFETY: buffers sized m*k, n*k, m*n.
            unsafe {
                linear_f32(
                    x.as_ptr(),
                    k,
                    m,
                    w.as_ptr(),
                    k,
                    n,
                    k,
                    out.as_mut_ptr(),
                    true,
                )
            };
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = (0..k)
                        .map(|t| x[i * k + t] as f64 * w[j * k + t] as f64)
                        .sum::<f64>()
                        + 1.0;
                    let got = out[i * n + j] as f64;
                    assert!(
                        (got - want).abs() < 1e-3 * (1.0 + want.abs()),
                        "({m},{n},{k}) [{i},{j}] {got} vs {want}"
                    );
                }
            }
        }
    }
}
