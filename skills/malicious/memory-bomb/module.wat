;; memory.grow in a loop, writing to each new region so the pages are really resident.
;; The declared maximum (256 pages = 16 MiB) is what stops it.
(module
  (memory (export "memory") 1 256)
  (func (export "run") (result i32)
    (local $prev i32)
    (local $addr i32)
    (loop $grow
      (local.set $prev (memory.grow (i32.const 16)))
      (if (i32.eq (local.get $prev) (i32.const -1)) (then unreachable))
      (local.set $addr (i32.mul (local.get $prev) (i32.const 65536)))
      ;; touch one word per 4 KiB page of the new region
      (block $done
        (loop $touch
          (br_if $done (i32.ge_u (local.get $addr) (i32.mul (i32.add (local.get $prev) (i32.const 16)) (i32.const 65536))))
          (i32.store (local.get $addr) (i32.const 0xdeadbeef))
          (local.set $addr (i32.add (local.get $addr) (i32.const 4096)))
          (br $touch)))
      (br $grow))
    (i32.const 0)))
