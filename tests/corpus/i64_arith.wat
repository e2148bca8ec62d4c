;; i64 add/sub/mul wrapping at 2^64, plus mul of values whose product needs >64 bits.
(module
  (func (export "add") (param i64 i64) (result i64) (i64.add (local.get 0) (local.get 1)))
  (func (export "sub") (param i64 i64) (result i64) (i64.sub (local.get 0) (local.get 1)))
  (func (export "mul") (param i64 i64) (result i64) (i64.mul (local.get 0) (local.get 1)))
  (func (export "and_or_xor") (param i64 i64) (result i64)
    (i64.xor
      (i64.and (local.get 0) (local.get 1))
      (i64.or (local.get 0) (local.get 1))))
)
