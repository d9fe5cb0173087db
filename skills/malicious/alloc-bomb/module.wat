;; Host-side memory: Extism's alloc keeps blocks in the host process, outside the
;; module's declared maximum. 64 MiB per request, touched, forever.
(module
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/env" "store_u8" (func $store_u8 (param i64 i32)))
  (memory (export "memory") 1 1)
  (func (export "run") (result i32)
    (local $p i64)
    (local $i i64)
    (loop $more
      (local.set $p (call $alloc (i64.const 67108864)))
      (local.set $i (i64.const 0))
      (block $done
        (loop $touch
          (br_if $done (i64.ge_u (local.get $i) (i64.const 67108864)))
          (call $store_u8 (i64.add (local.get $p) (local.get $i)) (i32.const 1))
          (local.set $i (i64.add (local.get $i) (i64.const 4096)))
          (br $touch)))
      (br $more))
    (i32.const 0)))
