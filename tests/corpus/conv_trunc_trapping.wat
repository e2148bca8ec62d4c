;; Trapping float->int truncation: i32/i64 trunc_f32/f64 _s/_u. NaN traps
;; bad_conversion_to_integer; out-of-range and +-inf trap integer_overflow;
;; values just inside the range (e.g. -0.9 for _u, -2147483648.0 for i32 _s) succeed.
(module
  (func (export "i32_trunc_f32_s") (param f32) (result i32) (i32.trunc_f32_s (local.get 0)))
  (func (export "i32_trunc_f32_u") (param f32) (result i32) (i32.trunc_f32_u (local.get 0)))
  (func (export "i32_trunc_f64_s") (param f64) (result i32) (i32.trunc_f64_s (local.get 0)))
  (func (export "i32_trunc_f64_u") (param f64) (result i32) (i32.trunc_f64_u (local.get 0)))
  (func (export "i64_trunc_f32_s") (param f32) (result i64) (i64.trunc_f32_s (local.get 0)))
  (func (export "i64_trunc_f32_u") (param f32) (result i64) (i64.trunc_f32_u (local.get 0)))
  (func (export "i64_trunc_f64_s") (param f64) (result i64) (i64.trunc_f64_s (local.get 0)))
  (func (export "i64_trunc_f64_u") (param f64) (result i64) (i64.trunc_f64_u (local.get 0)))
)
