;; i32 sign-extension ops (extend8_s, extend16_s) and i32.wrap_i64 truncation.
(module
  (func (export "extend8_s") (param i32) (result i32) (i32.extend8_s (local.get 0)))
  (func (export "extend16_s") (param i32) (result i32) (i32.extend16_s (local.get 0)))
  (func (export "wrap_i64") (param i64) (result i32) (i32.wrap_i64 (local.get 0)))
)
