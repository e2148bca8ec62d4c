;; int->float conversions (signed/unsigned, with rounding of wide integers),
;; f32.demote_f64 / f64.promote_f32 (overflow to inf, rounding), and the
;; reinterpret ops in both directions (bit-exact round trips, including NaN payloads
;; created inside the module).
(module
  (func (export "f32_convert_i32_s") (param i32) (result f32) (f32.convert_i32_s (local.get 0)))
  (func (export "f32_convert_i32_u") (param i32) (result f32) (f32.convert_i32_u (local.get 0)))
  (func (export "f32_convert_i64_s") (param i64) (result f32) (f32.convert_i64_s (local.get 0)))
  (func (export "f32_convert_i64_u") (param i64) (result f32) (f32.convert_i64_u (local.get 0)))
  (func (export "f64_convert_i32_u") (param i32) (result f64) (f64.convert_i32_u (local.get 0)))
  (func (export "f64_convert_i64_s") (param i64) (result f64) (f64.convert_i64_s (local.get 0)))
  (func (export "f64_convert_i64_u") (param i64) (result f64) (f64.convert_i64_u (local.get 0)))
  (func (export "demote") (param f64) (result f32) (f32.demote_f64 (local.get 0)))
  (func (export "promote") (param f32) (result f64) (f64.promote_f32 (local.get 0)))
  (func (export "i32_reinterpret_f32") (param f32) (result i32) (i32.reinterpret_f32 (local.get 0)))
  (func (export "f32_reinterpret_i32") (param i32) (result f32) (f32.reinterpret_i32 (local.get 0)))
  (func (export "i64_reinterpret_f64") (param f64) (result i64) (i64.reinterpret_f64 (local.get 0)))
  (func (export "f64_reinterpret_i64") (param i64) (result f64) (f64.reinterpret_i64 (local.get 0)))
  (func (export "roundtrip_i32") (param i32) (result i32)
    (i32.reinterpret_f32 (f32.reinterpret_i32 (local.get 0))))
  (func (export "roundtrip_i64") (param i64) (result i64)
    (i64.reinterpret_f64 (f64.reinterpret_i64 (local.get 0))))
)
