;; Tables + call_indirect: correct dispatch, signature mismatch (bad_signature),
;; null slot (indirect_call_to_null), index >= table size (table_out_of_bounds),
;; and a second table filled with elem segments at an offset.
(module
  (type $i2i (func (param i32) (result i32)))
  (type $v2l (func (result i64)))
  (table $t 5 funcref)
  (table $t2 3 funcref)
  (elem (table $t) (i32.const 0) func $double $square $const64 $negate)
  (elem (table $t2) (i32.const 1) func $const64 $square)
  (func $double (type $i2i) (i32.mul (local.get 0) (i32.const 2)))
  (func $square (type $i2i) (i32.mul (local.get 0) (local.get 0)))
  (func $const64 (type $v2l) (i64.const 0x123456789))
  (func $negate (type $i2i) (i32.sub (i32.const 0) (local.get 0)))
  ;; slot 4 of $t is left null
  (func (export "call_i2i") (param $idx i32) (param $x i32) (result i32)
    (call_indirect $t (type $i2i) (local.get $x) (local.get $idx)))
  (func (export "call_v2l") (param $idx i32) (result i64)
    (call_indirect $t (type $v2l) (local.get $idx)))
  (func (export "call_t2_i2i") (param $idx i32) (param $x i32) (result i32)
    (call_indirect $t2 (type $i2i) (local.get $x) (local.get $idx)))
  (func (export "table_sizes") (result i32 i32)
    (table.size $t) (table.size $t2))
)
