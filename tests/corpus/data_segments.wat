;; Active data segments (at offset 0, at a higher offset, overlapping: later wins)
;; and passive segments used with memory.init / data.drop (init after drop with a
;; non-zero length traps memory_out_of_bounds; zero length is fine).
(module
  (memory 1)
  (data (i32.const 0) "\01\02\03\04\05\06\07\08")
  (data (i32.const 100) "hello, wasm\00")
  (data (i32.const 4) "\aa\bb")
  (data (i32.const 65532) "\de\ad\be\ef")
  (data $passive "\10\20\30\40\50\60\70\80")
  (func (export "load8_u") (param i32) (result i32) (i32.load8_u (local.get 0)))
  (func (export "load32") (param i32) (result i32) (i32.load (local.get 0)))
  (func (export "load64") (param i32) (result i64) (i64.load (local.get 0)))
  (func (export "strlen") (param $p i32) (result i32)
    (local $n i32)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (i32.load8_u (i32.add (local.get $p) (local.get $n)))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $next)))
    (local.get $n))
  (func (export "init") (param $dst i32) (param $src i32) (param $len i32) (result i64)
    (memory.init $passive (local.get $dst) (local.get $src) (local.get $len))
    (i64.load (local.get $dst)))
  (func (export "init_after_drop") (param $len i32) (result i32)
    (data.drop $passive)
    (memory.init $passive (i32.const 0) (i32.const 0) (local.get $len))
    (i32.load (i32.const 0)))
)
