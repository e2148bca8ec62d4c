//! Ops on a real CUDA device: the NVRTC kernels of `sources` and cuBLAS,
//! launched on the device's stream (`device::cuda`).
//!
//! Inputs are read where they are (strided inputs are first gathered into
//! contiguous device memory); outputs are new device tensors charged to the
//! caller's budget. Views (`transpose`, `slice`, a contiguous `reshape`)
//! only change metadata, as on the CPU. Argument checks follow the CPU
//! kernels' (the same error kinds); the arithmetic follows docs/ABI.md.

use std::ffi::c_void;
use std::sync::Arc;

use cudarc::cublas::sys as blas;

use super::sources::{BLOCK, Family, size_suffix};
use crate::device::cuda::{CudaDevice, device};
use crate::device::{self, cuda_address};
use crate::error::{CoreError, CoreResult, ErrorKind};
use crate::kernels::args::ArgReader;
use crate::kernels::call::{Call, parse};
use crate::kernels::cpu::shape;
use crate::kernels::cpu::util::{broadcast_shape, broadcast_strides};
use crate::kernels::{Arg, OpCtx, OpId, run_cpu};
use crate::tensor::{Budget, DType, Device, MAX_NDIM, Tensor};

/// The kernels' `Strides` (sources::COMMON), field for field.
#[repr(C)]
#[derive(Clone, Copy)]
struct KStrides {
    ndim: i32,
    _pad: i32,
    dims: [i64; MAX_NDIM],
    s0: [i64; MAX_NDIM],
    s1: [i64; MAX_NDIM],
}

impl KStrides {
    fn new(dims: &[usize], s0: &[isize], s1: &[isize]) -> KStrides {
        let mut k = KStrides {
            ndim: dims.len() as i32,
            _pad: 0,
            dims: [1; MAX_NDIM],
            s0: [0; MAX_NDIM],
            s1: [0; MAX_NDIM],
        };
        for i in 0..dims.len().min(MAX_NDIM) {
            k.dims[i] = dims[i] as i64;
            k.s0[i] = s0[i] as i64;
            k.s1[i] = s1[i] as i64;
        }
        k
    }
}

fn arg<T>(v: &mut T) -> *mut c_void {
    (v as *mut T).cast()
}

fn dev_of(t: &Tensor) -> CoreResult<u32> {
    match t.device() {
        Device::Cuda(n) => Ok(n),
        Device::Cpu => Err(CoreError::internal("a host tensor in a device op")),
    }
}

fn dtype_error(op: OpId, what: &str, d: DType) -> CoreError {
    CoreError::new(
        ErrorKind::DtypeMismatch,
        format!("{}: {what} is not supported for {}", op.name(), d.name()),
    )
}

/// `t` as one contiguous block of its device (itself when it already is).
pub fn contiguous(t: &Tensor, budget: Option<&Arc<Budget>>) -> CoreResult<Tensor> {
    if t.is_contiguous() {
        return Ok(t.clone());
    }
    let n = dev_of(t)?;
    let out = device::alloc_tensor(n, t.dtype(), t.shape(), budget)?;
    copy_strided(device(n)?, t, &out, t.shape(), t.strides(), out.strides())?;
    Ok(out)
}

/// dst[walk s1] = src[walk s0] over `dims` (addresses from each tensor's
/// element 0).
fn copy_strided(
    d: &CudaDevice,
    src: &Tensor,
    dst: &Tensor,
    dims: &[usize],
    s0: &[isize],
    s1: &[isize],
) -> CoreResult<()> {
    let n: usize = dims.iter().product();
    if n == 0 {
        return Ok(());
    }
    copy_strided_at(
        d,
        src.dtype().size(),
        cuda_address(src)?,
        cuda_address(dst)?,
        dims,
        s0,
        s1,
    )
}

fn copy_strided_at(
    d: &CudaDevice,
    elem: usize,
    mut src: u64,
    mut dst: u64,
    dims: &[usize],
    s0: &[isize],
    s1: &[isize],
) -> CoreResult<()> {
    let n: usize = dims.iter().product();
    let mut n64 = n as i64;
    let mut k = KStrides::new(dims, s0, s1);
    let entry = format!("copy_strided_{}", size_suffix(elem));
    d.launch(
        Family::Move,
        move_module(elem),
        &entry,
        CudaDevice::grid_for(n, BLOCK),
        BLOCK,
        &mut [arg(&mut src), arg(&mut dst), arg(&mut n64), arg(&mut k)],
    )
}

/// The `Move` module for elements of `elem` bytes (modules of byte movers
/// are keyed by a dtype of that size).
fn move_module(elem: usize) -> DType {
    match elem {
        1 => DType::U8,
        2 => DType::F16,
        4 => DType::F32,
        _ => DType::F64,
    }
}

/// Launches an elementwise kernel `(x, out, n, extra...)` over `out`'s
/// elements (`x` contiguous, `out` fresh); nothing for an empty `out`.
fn launch_map(
    d: &CudaDevice,
    family: Family,
    module: DType,
    entry: &str,
    x: &Tensor,
    out: &Tensor,
    extra: &mut [*mut c_void],
) -> CoreResult<()> {
    let n = out.numel();
    if n == 0 {
        return Ok(());
    }
    let (mut px, mut po, mut n64) = (cuda_address(x)?, cuda_address(out)?, n as i64);
    let mut params = vec![arg(&mut px), arg(&mut po), arg(&mut n64)];
    params.extend_from_slice(extra);
    d.launch(
        family,
        module,
        entry,
        CudaDevice::grid_for(n, BLOCK),
        BLOCK,
        &mut params,
    )
}

pub fn run(n: u32, op: OpId, args: &[Arg], ctx: &OpCtx<'_>) -> CoreResult<Tensor> {
    let d = device(n)?;
    let mut r = ArgReader::new(op.name(), args);
    match parse(op, &mut r)? {
        Call::Binary { a, b } => binary(d, op, a, b, ctx),
        Call::Unary { x, approximate } => unary(d, op, x, approximate, ctx),
        Call::Scale { x, factor } => scale(d, x, factor, ctx),
        Call::Softmax { x, axis } => softmax(d, x, axis, ctx),
        Call::Norm {
            x,
            gamma,
            beta,
            eps,
            ..
        } => norm(d, op, x, gamma, beta, eps, ctx),
        Call::Reduce { x, axis, keepdim } => reduce(d, op, x, axis, keepdim, ctx),
        Call::Cast { x, to } => cast(d, x, to, ctx),
        Call::Embedding { table, ids } => embedding(d, &r, table, ids, ctx),
        Call::Matmul { a, b } => matmul(d, a, b, ctx),
        Call::Linear { x, weight, bias } => linear(d, x, weight, bias, ctx),
        // Views: metadata only, as on the CPU.
        Call::Transpose { .. } | Call::Slice { .. } => run_cpu(op, args, ctx),
        Call::Reshape { x, .. } => {
            // A contiguous tensor reshapes as a view; anything else is
            // gathered on the device first (x is the first argument).
            let mut owned = args.to_vec();
            owned[0] = Arg::Tensor(contiguous(x, ctx.budget)?);
            run_cpu(op, &owned, ctx)
        }
        Call::Concat { tensors, axis } => concat(d, &r, &tensors, axis, ctx),
    }
}

fn binary(d: &CudaDevice, op: OpId, a: &Tensor, b: &Tensor, ctx: &OpCtx<'_>) -> CoreResult<Tensor> {
    let dt = a.dtype();
    if b.dtype() != dt {
        return Err(CoreError::new(
            ErrorKind::DtypeMismatch,
            format!(
                "{}: a is {} and b is {}",
                op.name(),
                dt.name(),
                b.dtype().name()
            ),
        ));
    }
    if dt == DType::Bool {
        return Err(dtype_error(op, "bool", dt));
    }
    let shape = broadcast_shape(op.name(), a.shape(), b.shape())?;
    let out = ctx.alloc(dt, &shape)?;
    let n = out.numel();
    if n == 0 {
        return Ok(out);
    }
    let (mut pa, mut pb, mut po) = (cuda_address(a)?, cuda_address(b)?, cuda_address(&out)?);
    let mut n64 = n as i64;
    let grid = CudaDevice::grid_for(n, BLOCK);
    if a.shape() == b.shape() && a.is_contiguous() && b.is_contiguous() {
        let entry = format!("{}_contig_{}", op.name(), dt.name());
        d.launch(
            Family::Binary,
            dt,
            &entry,
            grid,
            BLOCK,
            &mut [arg(&mut pa), arg(&mut pb), arg(&mut po), arg(&mut n64)],
        )?;
    } else {
        let sa = broadcast_strides(a, &shape);
        let sb = broadcast_strides(b, &shape);
        let mut k = KStrides::new(&shape, &sa, &sb);
        let entry = format!("{}_bcast_{}", op.name(), dt.name());
        d.launch(
            Family::Binary,
            dt,
            &entry,
            grid,
            BLOCK,
            &mut [
                arg(&mut pa),
                arg(&mut pb),
                arg(&mut po),
                arg(&mut n64),
                arg(&mut k),
            ],
        )?;
    }
    Ok(out)
}

fn unary(
    d: &CudaDevice,
    op: OpId,
    x: &Tensor,
    approximate: bool,
    ctx: &OpCtx<'_>,
) -> CoreResult<Tensor> {
    let dt = x.dtype();
    let ok = if op == OpId::Relu {
        dt.is_float() || matches!(dt, DType::I32 | DType::I64 | DType::I8 | DType::U8)
    } else {
        dt.is_float()
    };
    if dt == DType::U8 && op == OpId::Relu {
        // u8 is returned unchanged (a copy).
        return cast(d, x, DType::U8, ctx);
    }
    if !ok {
        return Err(dtype_error(op, "this dtype", dt));
    }
    let x = contiguous(x, ctx.budget)?;
    let out = ctx.alloc(dt, x.shape())?;
    let name = if op == OpId::Gelu && approximate {
        "gelu_tanh"
    } else {
        op.name()
    };
    let entry = format!("{name}_{}", dt.name());
    launch_map(d, Family::Unary, dt, &entry, &x, &out, &mut [])?;
    Ok(out)
}

fn scale(d: &CudaDevice, x: &Tensor, factor: f64, ctx: &OpCtx<'_>) -> CoreResult<Tensor> {
    let dt = x.dtype();
    if !(dt.is_float() || matches!(dt, DType::I32 | DType::I64)) {
        return Err(dtype_error(OpId::Scale, "this dtype", dt));
    }
    let x = contiguous(x, ctx.budget)?;
    let out = ctx.alloc(dt, x.shape())?;
    let mut f = factor;
    let entry = format!("scale_{}", dt.name());
    launch_map(d, Family::Scale, dt, &entry, &x, &out, &mut [arg(&mut f)])?;
    Ok(out)
}

/// (outer, len, inner) of `shape` around `axis`.
fn split(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    let outer = shape[..axis].iter().product();
    let inner = shape[axis + 1..].iter().product();
    (outer, shape[axis], inner)
}

fn rows_grid(rows: usize) -> u32 {
    rows.clamp(1, 65_535 * 8) as u32
}

fn softmax(d: &CudaDevice, x: &Tensor, axis: usize, ctx: &OpCtx<'_>) -> CoreResult<Tensor> {
    let dt = x.dtype();
    if !dt.is_float() {
        return Err(dtype_error(OpId::Softmax, "this dtype", dt));
    }
    let x = contiguous(x, ctx.budget)?;
    let out = ctx.alloc(dt, x.shape())?;
    let (outer, len, inner) = split(x.shape(), axis);
    let rows = outer * inner;
    if rows == 0 || len == 0 {
        return Ok(out);
    }
    let (mut px, mut po) = (cuda_address(&x)?, cuda_address(&out)?);
    let (mut r64, mut l64, mut i64_) = (rows as i64, len as i64, inner as i64);
    d.launch(
        Family::Rows,
        dt,
        &format!("softmax_{}", dt.name()),
        rows_grid(rows),
        BLOCK,
        &mut [
            arg(&mut px),
            arg(&mut po),
            arg(&mut r64),
            arg(&mut l64),
            arg(&mut i64_),
        ],
    )?;
    Ok(out)
}

fn norm(
    d: &CudaDevice,
    op: OpId,
    x: &Tensor,
    gamma: Option<&Tensor>,
    beta: Option<&Tensor>,
    eps: f64,
    ctx: &OpCtx<'_>,
) -> CoreResult<Tensor> {
    let dt = x.dtype();
    if !dt.is_float() {
        return Err(dtype_error(op, "this dtype", dt));
    }
    if x.ndim() == 0 {
        return Err(CoreError::new(
            ErrorKind::ShapeMismatch,
            format!("{}: x must be at least 1-D", op.name()),
        ));
    }
    let len = *x.shape().last().unwrap_or(&1);
    let mut params = Vec::new();
    // Gathered copies of gamma and beta, alive until their kernel is queued.
    let mut keep = Vec::new();
    for (what, t) in [("gamma", gamma), ("beta", beta)] {
        let Some(t) = t else {
            params.push(0u64);
            continue;
        };
        if t.dtype() != dt {
            return Err(CoreError::new(
                ErrorKind::DtypeMismatch,
                format!(
                    "{}: {what} is {} and x is {}",
                    op.name(),
                    t.dtype().name(),
                    dt.name()
                ),
            ));
        }
        if t.shape() != [len] {
            return Err(CoreError::new(
                ErrorKind::ShapeMismatch,
                format!(
                    "{}: {what} must have shape [{len}], not {:?}",
                    op.name(),
                    t.shape()
                ),
            ));
        }
        let t = contiguous(t, ctx.budget)?;
        params.push(cuda_address(&t)?);
        keep.push(t);
    }
    let x = contiguous(x, ctx.budget)?;
    let out = ctx.alloc(dt, x.shape())?;
    let rows = x.numel() / len.max(1);
    if rows == 0 || len == 0 {
        return Ok(out);
    }
    let (mut px, mut po) = (cuda_address(&x)?, cuda_address(&out)?);
    let (mut pg, mut pb) = (params[0], params[1]);
    let (mut r64, mut l64, mut e) = (rows as i64, len as i64, eps);
    if op == OpId::Layernorm {
        d.launch(
            Family::Rows,
            dt,
            &format!("layernorm_{}", dt.name()),
            rows_grid(rows),
            BLOCK,
            &mut [
                arg(&mut px),
                arg(&mut pg),
                arg(&mut pb),
                arg(&mut po),
                arg(&mut r64),
                arg(&mut l64),
                arg(&mut e),
            ],
        )?;
    } else {
        d.launch(
            Family::Rows,
            dt,
            &format!("rmsnorm_{}", dt.name()),
            rows_grid(rows),
            BLOCK,
            &mut [
                arg(&mut px),
                arg(&mut pg),
                arg(&mut po),
                arg(&mut r64),
                arg(&mut l64),
                arg(&mut e),
            ],
        )?;
    }
    Ok(out)
}

fn reduce(
    d: &CudaDevice,
    op: OpId,
    x: &Tensor,
    axis: Option<usize>,
    keepdim: bool,
    ctx: &OpCtx<'_>,
) -> CoreResult<Tensor> {
    let dt = x.dtype();
    let ok = match op {
        OpId::Mean => dt.is_float(),
        OpId::Argmax => dt != DType::Bool,
        _ => dt != DType::Bool,
    };
    if !ok {
        return Err(dtype_error(op, "this dtype", dt));
    }
    let x = contiguous(x, ctx.budget)?;
    let (outer, len, inner, shape) = match axis {
        Some(a) => {
            let (o, l, i) = split(x.shape(), a);
            let mut s = x.shape().to_vec();
            if keepdim {
                s[a] = 1;
            } else {
                s.remove(a);
            }
            (o, l, i, s)
        }
        None => (
            1,
            x.numel(),
            1,
            if keepdim {
                vec![1; x.ndim()]
            } else {
                Vec::new()
            },
        ),
    };
    if len == 0 && matches!(op, OpId::Max | OpId::Argmax) {
        return Err(CoreError::invalid_args(format!(
            "{}: the reduced axis is empty",
            op.name()
        )));
    }
    let out_dt = if op == OpId::Argmax { DType::I64 } else { dt };
    let out = ctx.alloc(out_dt, &shape)?;
    let outs = outer * inner;
    if outs == 0 {
        return Ok(out);
    }
    let (mut px, mut po) = (cuda_address(&x)?, cuda_address(&out)?);
    let (mut o64, mut l64, mut i64_) = (outs as i64, len as i64, inner as i64);
    d.launch(
        Family::Reduce,
        dt,
        &format!("{}_{}", op.name(), dt.name()),
        rows_grid(outs),
        BLOCK,
        &mut [
            arg(&mut px),
            arg(&mut po),
            arg(&mut o64),
            arg(&mut l64),
            arg(&mut i64_),
        ],
    )?;
    Ok(out)
}

fn cast(d: &CudaDevice, x: &Tensor, to: DType, ctx: &OpCtx<'_>) -> CoreResult<Tensor> {
    let x = contiguous(x, ctx.budget)?;
    let out = ctx.alloc(to, x.shape())?;
    let entry = format!("cast_{}_to_{}", x.dtype().name(), to.name());
    launch_map(d, Family::Cast, x.dtype(), &entry, &x, &out, &mut [])?;
    Ok(out)
}

fn embedding(
    d: &CudaDevice,
    r: &ArgReader<'_>,
    table: &Tensor,
    ids: &Tensor,
    ctx: &OpCtx<'_>,
) -> CoreResult<Tensor> {
    let (rows, dim) = shape::embedding_dims(table, ids)?;
    let id_kind = if ids.dtype() == DType::I32 {
        "i32"
    } else {
        "i64"
    };
    let table = contiguous(table, ctx.budget)?;
    let ids = contiguous(ids, ctx.budget)?;
    let mut shape = ids.shape().to_vec();
    shape.push(dim);
    let out = ctx.alloc(table.dtype(), &shape)?;
    let n = out.numel();
    if n == 0 {
        return Ok(out);
    }
    let flag = device::alloc_tensor(d.index(), DType::I32, &[1], None)?;
    d.copy_htod(cuda_address(&flag)?, &[0u8; 4])?;
    let elem = table.dtype().size();
    let (mut pt, mut pi, mut po, mut pf) = (
        cuda_address(&table)?,
        cuda_address(&ids)?,
        cuda_address(&out)?,
        cuda_address(&flag)?,
    );
    let (mut nids, mut r64, mut d64) = (ids.numel() as i64, rows as i64, dim as i64);
    d.launch(
        Family::Move,
        move_module(elem),
        &format!("embedding_{id_kind}_{}", size_suffix(elem)),
        CudaDevice::grid_for(n, BLOCK),
        BLOCK,
        &mut [
            arg(&mut pt),
            arg(&mut pi),
            arg(&mut po),
            arg(&mut nids),
            arg(&mut r64),
            arg(&mut d64),
            arg(&mut pf),
        ],
    )?;
    let mut bad = [0u8; 4];
    d.copy_dtoh(&mut bad, pf)?;
    if i32::from_le_bytes(bad) != 0 {
        return Err(r.err(format!("an id is outside 0..{rows}")));
    }
    Ok(out)
}

fn concat(
    d: &CudaDevice,
    r: &ArgReader<'_>,
    tensors: &[&Tensor],
    axis: i64,
    ctx: &OpCtx<'_>,
) -> CoreResult<Tensor> {
    let (axis, shape) = shape::concat_shape(r, tensors, axis)?;
    let first = tensors[0];
    let out = ctx.alloc(first.dtype(), &shape)?;
    let elem = first.dtype().size();
    let mut at = 0usize;
    for t in tensors {
        let dst = cuda_address(&out)? + (at as u64) * (out.strides()[axis] as u64) * elem as u64;
        if t.numel() > 0 {
            copy_strided_at(
                d,
                elem,
                cuda_address(t)?,
                dst,
                t.shape(),
                t.strides(),
                out.strides(),
            )?;
        }
        at += t.shape()[axis];
    }
    Ok(out)
}

/// (cuBLAS data type, compute type) of a float dtype.
fn blas_types(dt: DType) -> Option<(blas::cudaDataType, blas::cublasComputeType_t)> {
    use blas::cublasComputeType_t::*;
    use blas::cudaDataType::*;
    match dt {
        DType::F32 => Some((CUDA_R_32F, CUBLAS_COMPUTE_32F)),
        DType::F16 => Some((CUDA_R_16F, CUBLAS_COMPUTE_32F)),
        DType::BF16 => Some((CUDA_R_16BF, CUBLAS_COMPUTE_32F)),
        DType::F64 => Some((CUDA_R_64F, CUBLAS_COMPUTE_64F)),
        _ => None,
    }
}

/// Row-major `c[b] = a[b] @ b[b]` (`[m, k] x [k, n]`), `batch` matrices
/// `sa`/`sb` elements apart (0: one matrix for the whole batch). With
/// `b_transposed`, `b` holds `[n, k]` matrices (linear's weight).
#[allow(clippy::too_many_arguments)]
fn gemm(
    d: &CudaDevice,
    dt: DType,
    a: u64,
    b: u64,
    c: u64,
    (batch, m, k, n): (usize, usize, usize, usize),
    (sa, sb): (usize, usize),
    b_transposed: bool,
) -> CoreResult<()> {
    if batch == 0 || m == 0 || n == 0 {
        return Ok(());
    }
    let Some((ty, compute)) = blas_types(dt) else {
        // Integers: the wrapping kernel (no transposed form needed: linear
        // transposes its weight on the device first).
        let (mut pa, mut pb, mut pc) = (a, b, c);
        let (mut b64, mut m64, mut k64, mut n64, mut sa64, mut sb64) = (
            batch as i64,
            m as i64,
            k as i64,
            n as i64,
            sa as i64,
            sb as i64,
        );
        return d.launch(
            Family::IntMatmul,
            dt,
            &format!("matmul_{}", dt.name()),
            CudaDevice::grid_for(batch * m * n, BLOCK),
            BLOCK,
            &mut [
                arg(&mut pa),
                arg(&mut pb),
                arg(&mut pc),
                arg(&mut b64),
                arg(&mut m64),
                arg(&mut k64),
                arg(&mut n64),
                arg(&mut sa64),
                arg(&mut sb64),
            ],
        );
    };
    let too_big = |v: usize| i32::try_from(v).is_err();
    if [batch, m, k, n].into_iter().any(too_big) {
        return Err(CoreError::invalid_args(
            "matmul: a dimension exceeds cuBLAS's 2^31 - 1",
        ));
    }
    let handle = d.blas_handle()?;
    // Column-major view of row-major data: C^T = B^T A^T, so B comes first.
    let (transb, ldb) = if b_transposed {
        (blas::cublasOperation_t::CUBLAS_OP_T, k)
    } else {
        (blas::cublasOperation_t::CUBLAS_OP_N, n)
    };
    let (one32, zero32, one64, zero64) = (1.0f32, 0.0f32, 1.0f64, 0.0f64);
    let (alpha, beta): (*const c_void, *const c_void) = if dt == DType::F64 {
        (
            (&one64 as *const f64).cast(),
            (&zero64 as *const f64).cast(),
        )
    } else {
        (
            (&one32 as *const f32).cast(),
            (&zero32 as *const f32).cast(),
        )
    };
    // SAFETY: the pointers address device buffers of the shapes given; the
    // scalars live across the (host-side, synchronous) call.
    unsafe {
        cudarc::cublas::result::gemm_strided_batched_ex(
            handle,
            transb,
            blas::cublasOperation_t::CUBLAS_OP_N,
            n as i32,
            m as i32,
            k as i32,
            alpha,
            b as usize as *const c_void,
            ty,
            ldb as i32,
            sb as i64,
            a as usize as *const c_void,
            ty,
            k as i32,
            sa as i64,
            beta,
            c as usize as *mut c_void,
            ty,
            n as i32,
            (m * n) as i64,
            batch as i32,
            compute,
            blas::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
        )
    }
    .map_err(|e| CoreError::internal(format!("cuda:{}: cuBLAS gemm failed: {e:?}", d.index())))
}

fn check_matmul_dtypes(op: OpId, dts: &[DType]) -> CoreResult<DType> {
    let dt = dts[0];
    if let Some(other) = dts.iter().find(|d| **d != dt) {
        return Err(CoreError::new(
            ErrorKind::DtypeMismatch,
            format!("{}: {} and {} differ", op.name(), dt.name(), other.name()),
        ));
    }
    if !(dt.is_float() || matches!(dt, DType::I32 | DType::I64)) {
        return Err(dtype_error(op, "this dtype", dt));
    }
    Ok(dt)
}

fn matmul(d: &CudaDevice, a: &Tensor, b: &Tensor, ctx: &OpCtx<'_>) -> CoreResult<Tensor> {
    let dt = check_matmul_dtypes(OpId::Matmul, &[a.dtype(), b.dtype()])?;
    if a.ndim() == 0 || b.ndim() == 0 {
        return Err(CoreError::new(
            ErrorKind::ShapeMismatch,
            "matmul: operands must be at least 1-D",
        ));
    }
    // numpy rules: a 1-D a is a row, a 1-D b a column; both dropped after.
    // (Reshaped once contiguous: a view, never a host copy.)
    let a2 = if a.ndim() == 1 {
        contiguous(a, ctx.budget)?.reshape_in(&[1, a.shape()[0]], None)?
    } else {
        a.clone()
    };
    let b2 = if b.ndim() == 1 {
        contiguous(b, ctx.budget)?.reshape_in(&[b.shape()[0], 1], None)?
    } else {
        b.clone()
    };
    let (m, k) = (a2.shape()[a2.ndim() - 2], a2.shape()[a2.ndim() - 1]);
    let (k2, n) = (b2.shape()[b2.ndim() - 2], b2.shape()[b2.ndim() - 1]);
    if k != k2 {
        return Err(CoreError::new(
            ErrorKind::ShapeMismatch,
            format!(
                "matmul: {:?} @ {:?}: inner dimensions differ",
                a.shape(),
                b.shape()
            ),
        ));
    }
    let batch_a = &a2.shape()[..a2.ndim() - 2];
    let batch_b = &b2.shape()[..b2.ndim() - 2];
    let batch_shape = broadcast_shape("matmul", batch_a, batch_b)?;
    let batch: usize = batch_shape.iter().product();
    // Each operand as `batch` contiguous matrices, or one shared by all.
    let operand = |t: &Tensor, rows: usize, cols: usize| -> CoreResult<(Tensor, usize)> {
        let own: usize = t.shape()[..t.ndim() - 2].iter().product();
        if own == 1 {
            return Ok((contiguous(t, ctx.budget)?, 0));
        }
        let mut full = batch_shape.clone();
        full.extend([rows, cols]);
        if t.shape() == full.as_slice() {
            return Ok((contiguous(t, ctx.budget)?, rows * cols));
        }
        let out = device::alloc_tensor(d.index(), dt, &full, ctx.budget)?;
        let strides = broadcast_strides(t, &full);
        copy_strided(d, t, &out, &full, &strides, out.strides())?;
        Ok((out, rows * cols))
    };
    let (ac, sa) = operand(&a2, m, k)?;
    let (bc, sb) = operand(&b2, k, n)?;
    let mut out_shape = batch_shape.clone();
    if a.ndim() > 1 {
        out_shape.push(m);
    }
    if b.ndim() > 1 {
        out_shape.push(n);
    }
    let out = ctx.alloc(dt, &out_shape)?;
    gemm(
        d,
        dt,
        cuda_address(&ac)?,
        cuda_address(&bc)?,
        cuda_address(&out)?,
        (batch, m, k, n),
        (sa, sb),
        false,
    )?;
    Ok(out)
}

fn linear(
    d: &CudaDevice,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    ctx: &OpCtx<'_>,
) -> CoreResult<Tensor> {
    let mut dts = vec![x.dtype(), w.dtype()];
    dts.extend(bias.map(Tensor::dtype));
    let dt = check_matmul_dtypes(OpId::Linear, &dts)?;
    if w.ndim() != 2 || x.ndim() == 0 {
        return Err(CoreError::new(
            ErrorKind::ShapeMismatch,
            "linear: weight must be [out, in] and x at least 1-D",
        ));
    }
    let (out_f, in_f) = (w.shape()[0], w.shape()[1]);
    if *x.shape().last().unwrap_or(&0) != in_f {
        return Err(CoreError::new(
            ErrorKind::ShapeMismatch,
            format!("linear: x {:?} does not end in {in_f}", x.shape()),
        ));
    }
    if let Some(b) = bias
        && b.shape() != [out_f]
    {
        return Err(CoreError::new(
            ErrorKind::ShapeMismatch,
            format!("linear: bias must be [{out_f}], not {:?}", b.shape()),
        ));
    }
    let xc = contiguous(x, ctx.budget)?;
    let rows = xc.numel() / in_f.max(1);
    let mut shape = x.shape().to_vec();
    *shape.last_mut().unwrap_or(&mut 0) = out_f;
    let out = ctx.alloc(dt, &shape)?;
    if blas_types(dt).is_some() {
        let wc = contiguous(w, ctx.budget)?;
        gemm(
            d,
            dt,
            cuda_address(&xc)?,
            cuda_address(&wc)?,
            cuda_address(&out)?,
            (1, rows, in_f, out_f),
            (0, 0),
            true,
        )?;
    } else {
        // Integers: weightᵀ gathered on the device, then the plain kernel.
        let wt = w.permute(&[1, 0])?;
        let wt = contiguous(&wt, ctx.budget)?;
        gemm(
            d,
            dt,
            cuda_address(&xc)?,
            cuda_address(&wt)?,
            cuda_address(&out)?,
            (1, rows, in_f, out_f),
            (0, 0),
            false,
        )?;
    }
    match bias {
        None => Ok(out),
        Some(b) => binary(d, OpId::Add, &out, b, ctx),
    }
}
