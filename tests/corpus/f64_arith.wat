;; f64 add/sub/mul/div/sqrt/min/max/abs/neg/copysign: double rounding (0.1+0.2),
;; overflow to inf, underflow to subnormal/zero, NaN propagation, signed zeros,
;; and bit-exact neg/abs/copysign on NaN constants.
(module
  (func (export "add") (param f64 f64) (result f64) (f64.add (local.get 0) (local.get 1)))
  (func (export "sub") (param f64 f64) (result f64) (f64.sub (local.get 0) (local.get 1)))
  (func (export "mul") (param f64 f64) (result f64) (f64.mul (local.get 0) (local.get 1)))
  (func (export "div") (param f64 f64) (result f64) (f64.div (local.get 0) (local.get 1)))
  (func (export "sqrt") (param f64) (result f64) (f64.sqrt (local.get 0)))
  (func (export "min") (param f64 f64) (result f64) (f64.min (local.get 0) (local.get 1)))
  (func (export "max") (param f64 f64) (result f64) (f64.max (local.get 0) (local.get 1)))
  (func (export "abs") (param f64) (result f64) (f64.abs (local.get 0)))
  (func (export "neg") (param f64) (result f64) (f64.neg (local.get 0)))
  (func (export "copysign") (param f64 f64) (result f64) (f64.copysign (local.get 0) (local.get 1)))
  (func (export "copysign_nan_bits") (param f64) (result i64)
    (i64.reinterpret_f64 (f64.copysign (f64.const nan:0x4000000000000) (local.get 0))))
  (func (export "neg_nan_bits") (result i64)
    (i64.reinterpret_f64 (f64.neg (f64.const nan:0x123456789))))
)
