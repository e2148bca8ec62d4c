;; i64 sign-extension ops (extend8_s/16_s/32_s) and i64.extend_i32_s / extend_i32_u.
(module
  (func (export "extend8_s") (param i64) (result i64) (i64.extend8_s (local.get 0)))
  (func (export "extend16_s") (param i64) (result i64) (i64.extend16_s (local.get 0)))
  (func (export "extend32_s") (param i64) (result i64) (i64.extend32_s (local.get 0)))
  (func (export "extend_i32_s") (param i32) (result i64) (i64.extend_i32_s (local.get 0)))
  (func (export "extend_i32_u") (param i32) (result i64) (i64.extend_i32_u (local.get 0)))
)
