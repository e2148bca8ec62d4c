;; f32 add/sub/mul/div/sqrt/min/max/abs/neg/copysign: single-precision rounding,
;; inf/NaN propagation, signed zeros (min(-0,0) = -0, max(-0,0) = +0), subnormals.
;; The *_bits exports apply the bitwise ops (neg/abs/copysign) to a NaN constant
;; and return the raw bits, which must be preserved exactly.
(module
  (func (export "add") (param f32 f32) (result f32) (f32.add (local.get 0) (local.get 1)))
  (func (export "sub") (param f32 f32) (result f32) (f32.sub (local.get 0) (local.get 1)))
  (func (export "mul") (param f32 f32) (result f32) (f32.mul (local.get 0) (local.get 1)))
  (func (export "div") (param f32 f32) (result f32) (f32.div (local.get 0) (local.get 1)))
  (func (export "sqrt") (param f32) (result f32) (f32.sqrt (local.get 0)))
  (func (export "min") (param f32 f32) (result f32) (f32.min (local.get 0) (local.get 1)))
  (func (export "max") (param f32 f32) (result f32) (f32.max (local.get 0) (local.get 1)))
  (func (export "abs") (param f32) (result f32) (f32.abs (local.get 0)))
  (func (export "neg") (param f32) (result f32) (f32.neg (local.get 0)))
  (func (export "copysign") (param f32 f32) (result f32) (f32.copysign (local.get 0) (local.get 1)))
  (func (export "copysign_nan_bits") (param f32) (result i32)
    (i32.reinterpret_f32 (f32.copysign (f32.const nan:0x200000) (local.get 0))))
  (func (export "neg_nan_bits") (result i32)
    (i32.reinterpret_f32 (f32.neg (f32.const nan:0x1234))))
  (func (export "abs_nan_bits") (result i32)
    (i32.reinterpret_f32 (f32.abs (f32.const -nan:0x1234))))
)
