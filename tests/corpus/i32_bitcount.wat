;; i32 clz/ctz/popcnt/eqz, including zero input (clz(0) == ctz(0) == 32) and all-ones.
(module
  (func (export "clz") (param i32) (result i32) (i32.clz (local.get 0)))
  (func (export "ctz") (param i32) (result i32) (i32.ctz (local.get 0)))
  (func (export "popcnt") (param i32) (result i32) (i32.popcnt (local.get 0)))
  (func (export "eqz") (param i32) (result i32) (i32.eqz (local.get 0)))
)
