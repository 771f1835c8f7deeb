  ;; Shared by the test guests (see __init__.py). Memory: bytes 0-8 are where the host writes
  ;; a result's address and size (8-16 a number), 64-128 number formatting, 256 the id, 4096
  ;; the build's strings; the heap starts at 64 KiB and is reset for every request.
  (import "env" "proxy_get_buffer_bytes" (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_buffer_bytes" (func $set_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get_header (param i32 i32 i32 i32 i32) (result i32)))
;;@definitions
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 65536))
  (data (i32.const 256) "{{id}}")

  (func $malloc (export "malloc") (param $size i32) (result i32)
    (local $at i32) (local $end i32) (local $have i32)
    (local.set $at (global.get $heap))
    (local.set $end (i32.and (i32.add (i32.add (local.get $at) (local.get $size)) (i32.const 7)) (i32.const -8)))
    (local.set $have (i32.mul (memory.size) (i32.const 65536)))
    (if (i32.gt_u (local.get $end) (local.get $have))
      (then
        (if (i32.eq (memory.grow (i32.add (i32.shr_u (i32.sub (local.get $end) (local.get $have)) (i32.const 16))
                                          (i32.const 1)))
                    (i32.const -1))
          (then unreachable))))
    (global.set $heap (local.get $end))
    (local.get $at))

  (func (export "proxy_abi_version_0_2_0"))
  (func (export "_start"))
  (func (export "proxy_get_id")
    (drop (call $set_buffer (i32.const 8) (i32.const 0) (i32.const 0) (i32.const 256) (i32.const {{id_len}}))))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (global.set $heap (i32.const 65536))
    (call $on_headers))
  (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32) (call $on_body))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32))

  ;; What the host left at the scratch words (address, size), which are cleared.
  (func $returned (result i32 i32)
    (local $ptr i32) (local $len i32)
    (local.set $ptr (i32.load (i32.const 0)))
    (local.set $len (i32.load (i32.const 4)))
    (i64.store (i32.const 0) (i64.const 0))
    (local.get $ptr) (local.get $len))

  ;; The request body (buffer 0).
  (func $body (result i32 i32)
    (drop (call $get_buffer (i32.const 0) (i32.const 0) (i32.const 0x7fffffff) (i32.const 0) (i32.const 4)))
    (call $returned))

  ;; The value of a request header (size 0 when absent).
  (func $header (param $name i32) (param $len i32) (result i32 i32)
    (drop (call $get_header (i32.const 0) (local.get $name) (local.get $len) (i32.const 0) (i32.const 4)))
    (call $returned))

  (func $append (param $ptr i32) (param $len i32)
    (drop (call $set_buffer (i32.const 1) (i32.const 0x7fffffff) (i32.const 0) (local.get $ptr) (local.get $len))))

  (func $append_u64 (param $n i64)
    (local $at i32)
    (local.set $at (i32.const 128))
    (loop $digits
      (local.set $at (i32.sub (local.get $at) (i32.const 1)))
      (i64.store8 (local.get $at) (i64.add (i64.const 48) (i64.rem_u (local.get $n) (i64.const 10))))
      (local.set $n (i64.div_u (local.get $n) (i64.const 10)))
      (br_if $digits (i64.ne (local.get $n) (i64.const 0))))
    (call $append (local.get $at) (i32.sub (i32.const 128) (local.get $at))))

  ;; "<result>:", how the test guests start an answer.
  (func $append_result (param $result i32)
    (call $append_u64 (i64.extend_i32_u (local.get $result)))
    (i32.store8 (i32.const 200) (i32.const 58))
    (call $append (i32.const 200) (i32.const 1)))

  (func $eq (param $a i32) (param $alen i32) (param $b i32) (param $blen i32) (result i32)
    (local $i i32)
    (if (i32.ne (local.get $alen) (local.get $blen)) (then (return (i32.const 0))))
    (loop $each
      (if (i32.lt_u (local.get $i) (local.get $alen))
        (then
          (if (i32.ne (i32.load8_u (i32.add (local.get $a) (local.get $i)))
                      (i32.load8_u (i32.add (local.get $b) (local.get $i))))
            (then (return (i32.const 0))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $each))))
    (i32.const 1))
