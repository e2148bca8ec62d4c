//! Limits hold and the executor keeps working after each one is hit.

use std::time::{Duration, Instant};

use _core::error::ErrorKind;
use _core::exec::function::{load_module, to_binary};
use _core::exec::{ArgValue, Function, Limits, PersistentInstance};

fn function(wat: &str, limits: Limits) -> Function {
    let binary = to_binary(wat.as_bytes(), true, 64 << 20).expect("wat");
    let compiled = load_module(&binary, None, 64 << 20).expect("load");
    Function::new(compiled, limits).expect("limits")
}

const ADD: &str = r#"(module (func (export "add") (param i32 i32) (result i32)
    local.get 0 local.get 1 i32.add))"#;

#[test]
fn infinite_loop_stops_at_the_deadline() {
    let f = function(
        r#"(module (func (export "spin") (loop br 0)))"#,
        Limits::default(),
    );
    let t = Instant::now();
    let err = f.invoke(Some("spin"), &[], &[], Some(100)).unwrap_err();
    let took = t.elapsed();
    assert_eq!(err.kind, ErrorKind::InvokeTimeout, "{}", err.message);
    assert!(
        took >= Duration::from_millis(100),
        "stopped early: {took:?}"
    );
    assert!(took < Duration::from_millis(150), "stopped late: {took:?}");
}

#[test]
fn memory_bomb_is_stopped_at_the_cap() {
    let bomb = r#"(module (memory 1)
        (func (export "grow") (result i32)
          (loop (br_if 0 (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
          memory.size)
        (func (export "bomb")
          (loop (br_if 0 (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
          unreachable))"#;
    let limits = Limits {
        max_memory_bytes: 8 << 20,
        ..Limits::default()
    };
    let f = function(bomb, limits);
    let out = f
        .invoke(Some("grow"), &[], &[], None)
        .expect("grow returns");
    let pages = match out.values[0] {
        _core::exec::values::ResultValue::Int(p) => p,
        ref v => panic!("unexpected {v:?}"),
    };
    assert!(pages * 65536 <= 8 << 20, "grew past the cap: {pages} pages");
    let err = f.invoke(Some("bomb"), &[], &[], None).unwrap_err();
    assert_eq!(err.kind, ErrorKind::MemoryLimit, "{}", err.message);
}

#[test]
fn initial_memory_above_the_cap_is_refused() {
    let limits = Limits {
        max_memory_bytes: 1 << 20,
        ..Limits::default()
    };
    let f = function(r#"(module (memory 32) (func (export "f")))"#, limits);
    let err = f.invoke(Some("f"), &[], &[], None).unwrap_err();
    assert_eq!(err.kind, ErrorKind::MemoryLimit, "{}", err.message);
}

#[test]
fn table_growth_is_capped() {
    let limits = Limits {
        max_table_elements: 100,
        ..Limits::default()
    };
    let f = function(
        r#"(module (table 1 funcref)
            (func (export "grow") (param i32) (result i32)
              (table.grow (ref.null func) (local.get 0))))"#,
        limits,
    );
    let ok = f
        .invoke(Some("grow"), &[ArgValue::Int(50)], &[], None)
        .unwrap();
    assert_eq!(ok.values[0], _core::exec::values::ResultValue::Int(1));
    let refused = f
        .invoke(Some("grow"), &[ArgValue::Int(1000)], &[], None)
        .unwrap();
    assert_eq!(refused.values[0], _core::exec::values::ResultValue::Int(-1));
}

#[test]
fn deep_recursion_is_a_stack_overflow_trap() {
    let f = function(
        r#"(module (func $r (export "r") (param i32) (result i32)
            (i32.add (call $r (local.get 0)) (i32.const 1))))"#,
        Limits::default(),
    );
    let err = f
        .invoke(Some("r"), &[ArgValue::Int(1)], &[], None)
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Trap);
    assert_eq!(err.trap_code, Some("stack_overflow"));
    // and the executor still works
    let add = function(ADD, Limits::default());
    assert!(
        add.invoke(
            Some("add"),
            &[ArgValue::Int(1), ArgValue::Int(2)],
            &[],
            None
        )
        .is_ok()
    );
}

#[test]
fn persistent_instance_keeps_state_and_survives_a_timeout() {
    let f = function(
        r#"(module (global $n (mut i32) (i32.const 0))
            (func (export "inc") (result i32)
              (global.set $n (i32.add (global.get $n) (i32.const 1))) (global.get $n))
            (func (export "spin") (loop br 0)))"#,
        Limits::default(),
    );
    let mut inst = PersistentInstance::new(&f).unwrap();
    for expected in 1..=3 {
        let out = inst.invoke(Some("inc"), &[], &[], None).unwrap();
        assert_eq!(
            out.values[0],
            _core::exec::values::ResultValue::Int(expected)
        );
    }
    let err = inst.invoke(Some("spin"), &[], &[], Some(20)).unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvokeTimeout);
    let out = inst.invoke(Some("inc"), &[], &[], None).unwrap();
    assert_eq!(out.values[0], _core::exec::values::ResultValue::Int(4));
}

#[test]
fn unknown_imports_are_named() {
    let binary = to_binary(
        br#"(module (import "env" "secret" (func)) (func (export "f")))"#,
        true,
        1 << 20,
    )
    .unwrap();
    let err = load_module(&binary, None, 1 << 20)
        .err()
        .expect("must fail");
    assert_eq!(err.kind, ErrorKind::UnknownImport);
    assert!(err.message.contains("env.secret"), "{}", err.message);
}

#[test]
fn oversized_and_garbage_modules_are_refused() {
    let err = load_module(&vec![0u8; 2048], None, 1024)
        .err()
        .expect("too large");
    assert_eq!(err.kind, ErrorKind::ModuleTooLarge);
    let err = load_module(b"\0asm\x01\0\0\0garbage", None, 1024)
        .err()
        .expect("garbage");
    assert_eq!(err.kind, ErrorKind::InvalidWasm);
    let err = load_module(b"hello", None, 1024).err().expect("not wasm");
    assert_eq!(err.kind, ErrorKind::InvalidWasm);
}

#[test]
fn disabled_proposals_are_rejected() {
    for wat in [
        r#"(module (memory i64 1))"#,
        r#"(module (memory 1 1 shared))"#,
        r#"(module (memory 1) (memory 1))"#,
        r#"(module (func (return_call 0)))"#,
    ] {
        let binary = to_binary(wat.as_bytes(), true, 1 << 20).unwrap();
        let err = load_module(&binary, None, 1 << 20).err().expect(wat);
        assert_eq!(err.kind, ErrorKind::InvalidWasm, "{wat}: {}", err.message);
    }
}
