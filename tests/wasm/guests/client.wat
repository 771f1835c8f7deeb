;; Upstream's demo function 1 (demo/faas/code/golang/client): `name=<book>` in the query
;; string, answered with function 2's inventory of it.
(module
  ;;@imports
  (import "env" "proxy_invoke_service" (func $invoke (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  ;;@prelude
  (global $name_ptr (mut i32) (i32.const 0))
  (global $name_len (mut i32) (i32.const 0))
  (func $on_headers (result i32) (i32.const 0))

  ;; The value of `name=` at the start of the query, up to the next '&'.
  (func $name (param $ptr i32) (param $len i32) (result i32)
    (local $end i32)
    (if (i32.lt_u (local.get $len) (i32.const 5)) (then (return (i32.const 0))))
    (if (i32.eqz (call $eq (local.get $ptr) (i32.const 5) {{s:name=}})) (then (return (i32.const 0))))
    (local.set $end (i32.add (local.get $ptr) (i32.const 5)))
    (loop $scan
      (if (i32.lt_u (local.get $end) (i32.add (local.get $ptr) (local.get $len)))
        (then
          (if (i32.ne (i32.load8_u (local.get $end)) (i32.const 38))
            (then (local.set $end (i32.add (local.get $end) (i32.const 1))) (br $scan))))))
    (global.set $name_ptr (i32.add (local.get $ptr) (i32.const 5)))
    (global.set $name_len (i32.sub (local.get $end) (global.get $name_ptr)))
    (i32.const 1))

  (func $on_body (result i32)
    (local $ptr i32) (local $len i32)
    (if (i32.eqz (call $name (call $body))) (then (return (i32.const 1))))
    (if (call $invoke {{s:id_2}} (i32.const 0) (i32.const 0) (global.get $name_ptr) (global.get $name_len)
                      (i32.const 0) (i32.const 4))
      (then (return (i32.const 1))))
    (call $returned)
    (local.set $len)
    (local.set $ptr)
    (call $append {{s:There are }})
    (call $append (local.get $ptr) (local.get $len))
    (call $append {{s: inventories for }})
    (call $append (global.get $name_ptr) (global.get $name_len))
    (call $append {{s:.}})
    (i32.const 0))
)
