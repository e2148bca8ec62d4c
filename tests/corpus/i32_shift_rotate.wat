;; i32 shl/shr_s/shr_u/rotl/rotr: shift count taken modulo 32 (shifts by >= 32 and
;; negative counts), arithmetic vs logical right shift, rotates wrapping bits.
(module
  (func (export "shl") (param i32 i32) (result i32)
    (i32.shl (local.get 0) (local.get 1)))
  (func (export "shr_s") (param i32 i32) (result i32)
    (i32.shr_s (local.get 0) (local.get 1)))
  (func (export "shr_u") (param i32 i32) (result i32)
    (i32.shr_u (local.get 0) (local.get 1)))
  (func (export "rotl") (param i32 i32) (result i32)
    (i32.rotl (local.get 0) (local.get 1)))
  (func (export "rotr") (param i32 i32) (result i32)
    (i32.rotr (local.get 0) (local.get 1)))
)
