;; Bulk memory: memory.fill (byte value truncated to 8 bits), memory.copy with
;; overlapping ranges in both directions, zero-length ops at the memory end
;; (allowed) and just past it (trap), and out-of-bounds fill/copy traps.
(module
  (memory 1 1)
  (data (i32.const 0) "\00\01\02\03\04\05\06\07\08\09\0a\0b\0c\0d\0e\0f")
  (func (export "fill") (param $dst i32) (param $val i32) (param $len i32) (result i64 i64)
    (memory.fill (local.get $dst) (local.get $val) (local.get $len))
    (i64.load (i32.const 0))
    (i64.load (i32.const 8)))
  (func (export "copy") (param $dst i32) (param $src i32) (param $len i32) (result i64 i64)
    (memory.copy (local.get $dst) (local.get $src) (local.get $len))
    (i64.load (i32.const 0))
    (i64.load (i32.const 8)))
  (func (export "fill_at") (param $dst i32) (param $val i32) (param $len i32) (result i32)
    (memory.fill (local.get $dst) (local.get $val) (local.get $len))
    (i32.load8_u (i32.const 65535)))
  (func (export "copy_at") (param $dst i32) (param $src i32) (param $len i32) (result i32)
    (memory.copy (local.get $dst) (local.get $src) (local.get $len))
    (i32.load8_u (i32.const 65535)))
)
