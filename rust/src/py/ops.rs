//! `_core.op(name, *args)`: the kernel registry for Python callers.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyInt, PyList, PyTuple};

use super::errors::to_pyerr;
use super::tensor::{Tensor, from_dlpack_any};
use crate::kernels::{self, Arg, OpCtx, OpId};

fn to_arg(py: Python<'_>, v: &Bound<'_, PyAny>, out: &mut Vec<Arg>) -> PyResult<()> {
    if v.is_instance_of::<PyBool>() || v.is_instance_of::<PyInt>() {
        out.push(Arg::Int(v.extract::<i64>()?));
    } else if v.is_instance_of::<PyFloat>() {
        out.push(Arg::Float(v.extract::<f64>()?));
    } else if let Ok(b) = v.cast::<PyBytes>() {
        out.push(Arg::Bytes(b.as_bytes().to_vec()));
    } else if v.is_instance_of::<PyList>() || v.is_instance_of::<PyTuple>() {
        // A sequence argument (perm, dims, a list of tensors) is spread.
        for item in v.try_iter()? {
            to_arg(py, &item?, out)?;
        }
    } else if v.hasattr("__dlpack__")? || v.cast::<Tensor>().is_ok() {
        out.push(Arg::Tensor(from_dlpack_any(py, v)?));
    } else {
        return Err(PyTypeError::new_err(format!(
            "op arguments are tensors (or DLPack producers), ints, floats or bytes, not {}",
            v.get_type().name()?
        )));
    }
    Ok(())
}

/// Runs op `name` on `args` (the GIL is released while it runs).
#[pyfunction]
#[pyo3(signature = (name, *args))]
pub fn op(py: Python<'_>, name: &str, args: &Bound<'_, PyTuple>) -> PyResult<Tensor> {
    let mut converted = Vec::with_capacity(args.len());
    for a in args.iter() {
        to_arg(py, &a, &mut converted)?;
    }
    let result = py.detach(|| kernels::dispatch(name, &converted, &OpCtx::default()));
    result
        .map(|inner| Tensor { inner })
        .map_err(|e| to_pyerr(py, e))
}

/// Names of every op of ABI v1.
#[pyfunction]
pub fn op_names() -> Vec<&'static str> {
    OpId::ALL.iter().map(|o| o.name()).collect()
}

/// `[(op, device, count)]` of dispatches so far in this process.
#[pyfunction]
pub fn kernel_dispatch_counts() -> Vec<(&'static str, &'static str, u64)> {
    kernels::dispatch_counts()
}
