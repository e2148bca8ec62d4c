;; i32 add/sub/mul: two's-complement wrapping on overflow, mul low bits, neg via sub.
(module
  (func (export "add") (param i32 i32) (result i32)
    (i32.add (local.get 0) (local.get 1)))
  (func (export "sub") (param i32 i32) (result i32)
    (i32.sub (local.get 0) (local.get 1)))
  (func (export "mul") (param i32 i32) (result i32)
    (i32.mul (local.get 0) (local.get 1)))
  (func (export "neg") (param i32) (result i32)
    (i32.sub (i32.const 0) (local.get 0)))
  (func (export "and_or_xor") (param i32 i32) (result i32)
    ;; (a & b) ^ (a | b) == a ^ b
    (i32.xor
      (i32.and (local.get 0) (local.get 1))
      (i32.or (local.get 0) (local.get 1))))
)
