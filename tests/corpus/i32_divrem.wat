;; i32 div_s/div_u/rem_s/rem_u: truncation toward zero, sign of remainder,
;; INT_MIN/-1 (div_s traps integer_overflow, rem_s yields 0), divide-by-zero traps.
(module
  (func (export "div_s") (param i32 i32) (result i32)
    (i32.div_s (local.get 0) (local.get 1)))
  (func (export "div_u") (param i32 i32) (result i32)
    (i32.div_u (local.get 0) (local.get 1)))
  (func (export "rem_s") (param i32 i32) (result i32)
    (i32.rem_s (local.get 0) (local.get 1)))
  (func (export "rem_u") (param i32 i32) (result i32)
    (i32.rem_u (local.get 0) (local.get 1)))
)
