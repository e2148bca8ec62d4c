//! Op arguments: the one form both the guest ABI's argv records and Python
//! calls are decoded into, and a reader that validates them per op.

use crate::error::{CoreError, CoreResult, ErrorKind};
use crate::tensor::Tensor;

/// One argument of an op.
#[derive(Debug, Clone)]
pub enum Arg {
    Tensor(Tensor),
    Int(i64),
    Float(f64),
    Bytes(Vec<u8>),
}

impl Arg {
    fn what(&self) -> &'static str {
        match self {
            Arg::Tensor(_) => "a tensor",
            Arg::Int(_) => "an integer",
            Arg::Float(_) => "a float",
            Arg::Bytes(_) => "bytes",
        }
    }
}

/// Reads an op's arguments in order, with errors that name the op.
pub struct ArgReader<'a> {
    op: &'static str,
    args: &'a [Arg],
    pos: usize,
}

impl<'a> ArgReader<'a> {
    pub fn new(op: &'static str, args: &'a [Arg]) -> Self {
        ArgReader { op, args, pos: 0 }
    }

    pub fn err(&self, msg: impl std::fmt::Display) -> CoreError {
        CoreError::new(ErrorKind::InvalidArgs, format!("{}: {msg}", self.op))
    }

    pub fn tensor(&mut self, what: &str) -> CoreResult<&'a Tensor> {
        match self.args.get(self.pos) {
            Some(Arg::Tensor(t)) => {
                self.pos += 1;
                Ok(t)
            }
            Some(other) => Err(self.err(format!(
                "argument {} ({what}) must be a tensor, got {}",
                self.pos,
                other.what()
            ))),
            None => Err(self.err(format!("missing argument {} ({what})", self.pos))),
        }
    }

    pub fn opt_tensor(&mut self) -> Option<&'a Tensor> {
        match self.args.get(self.pos) {
            Some(Arg::Tensor(t)) => {
                self.pos += 1;
                Some(t)
            }
            _ => None,
        }
    }

    pub fn opt_int(&mut self) -> Option<i64> {
        match self.args.get(self.pos) {
            Some(Arg::Int(v)) => {
                self.pos += 1;
                Some(*v)
            }
            _ => None,
        }
    }

    pub fn int(&mut self, what: &str) -> CoreResult<i64> {
        self.opt_int()
            .ok_or_else(|| self.err(format!("argument {} ({what}) must be an integer", self.pos)))
    }

    /// A float argument (integers are accepted too).
    pub fn opt_float(&mut self) -> Option<f64> {
        match self.args.get(self.pos) {
            Some(Arg::Float(v)) => {
                self.pos += 1;
                Some(*v)
            }
            Some(Arg::Int(v)) => {
                self.pos += 1;
                Some(*v as f64)
            }
            _ => None,
        }
    }

    pub fn float(&mut self, what: &str) -> CoreResult<f64> {
        self.opt_float()
            .ok_or_else(|| self.err(format!("argument {} ({what}) must be a number", self.pos)))
    }

    /// All remaining integer arguments.
    pub fn rest_ints(&mut self) -> Vec<i64> {
        let mut v = Vec::new();
        while let Some(i) = self.opt_int() {
            v.push(i);
        }
        v
    }

    /// All remaining tensor arguments.
    pub fn rest_tensors(&mut self) -> Vec<&'a Tensor> {
        let mut v = Vec::new();
        while let Some(t) = self.opt_tensor() {
            v.push(t);
        }
        v
    }

    /// Fails if arguments are left over.
    pub fn finish(&self) -> CoreResult<()> {
        if self.pos < self.args.len() {
            return Err(self.err(format!(
                "unexpected argument {} ({}); takes {} here",
                self.pos,
                self.args[self.pos].what(),
                self.pos
            )));
        }
        Ok(())
    }

    /// A Python-style axis index (negative counts from the end).
    pub fn axis(&self, axis: i64, ndim: usize) -> CoreResult<usize> {
        let n = ndim as i64;
        let a = if axis < 0 { axis + n } else { axis };
        if a < 0 || a >= n {
            return Err(CoreError::new(
                ErrorKind::InvalidArgs,
                format!(
                    "{}: axis {axis} is out of range for {ndim} dimensions",
                    self.op
                ),
            ));
        }
        Ok(a as usize)
    }
}
