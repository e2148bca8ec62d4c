;; Stateful memory: stores in one invoke are visible to loads in later invokes on
;; the same instance, also after a trapping invoke and after memory.grow; a data
;; segment provides the initial contents of each fresh instance.
(module
  (memory 1 4)
  (data (i32.const 16) "\2a\00\00\00")
  (func (export "store") (param i32 i32) (i32.store (local.get 0) (local.get 1)))
  (func (export "load") (param i32) (result i32) (i32.load (local.get 0)))
  (func (export "store64") (param i32 i64) (i64.store (local.get 0) (local.get 1)))
  (func (export "load64") (param i32) (result i64) (i64.load (local.get 0)))
  (func (export "storef64") (param i32 f64) (f64.store (local.get 0) (local.get 1)))
  (func (export "loadf64") (param i32) (result f64) (f64.load (local.get 0)))
  (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
  (func (export "size") (result i32) (memory.size))
  (func (export "fill") (param i32 i32 i32) (memory.fill (local.get 0) (local.get 1) (local.get 2)))
)
