//! A wasi:http handler with no SDK: the `wasip2` bindings and nothing else, as a user
//! following the WASI docs would write it. The runtime must run it unchanged.

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)] // wit-bindgen's export glue
mod component {
    use wasip2::http::types::{
        Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
    };

    struct Plain;

    impl wasip2::exports::http::incoming_handler::Guest for Plain {
        fn handle(request: IncomingRequest, out: ResponseOutparam) {
            let path = request.path_with_query().unwrap_or_default();
            // For the host-memory caps: hold header sets until the host refuses one more,
            // or build a header set of 64 KiB (over our 32 KiB, under wasmtime's 128 KiB). Either traps the instance.
            if path.ends_with("/hoard-resources") {
                let hoard: Vec<Fields> = (0..1_000_000).map(|_| Fields::new()).collect();
                return respond(out, &format!("held {} header sets\n", hoard.len()));
            }
            // For the memory budget: 2,000 header sets filled to 31 KiB each (62 MiB
            // of host memory), held for two seconds so that several instances hold
            // theirs at once. The host charges every set to the memory budget.
            if path.ends_with("/hoard-headers") {
                let value = vec![b'a'; 31 << 10];
                let mut hoard = Vec::with_capacity(2_000);
                for _ in 0..2_000 {
                    let fields = Fields::new();
                    fields.append("x-fill", &value).unwrap();
                    hoard.push(fields);
                }
                wasip2::clocks::monotonic_clock::subscribe_duration(2_000_000_000).block();
                return respond(out, &format!("held {} full header sets\n", hoard.len()));
            }
            if path.ends_with("/big-header") {
                let fields = Fields::new();
                let result = fields.append("x-big", &vec![b'a'; 64 << 10]);
                return respond(out, &format!("64 KiB header: {result:?}\n"));
            }
            let headers =
                Fields::from_list(&[("content-type".to_string(), b"text/plain".to_vec())]).unwrap();
            let response = OutgoingResponse::new(headers);
            response.set_status_code(200).unwrap();
            let body = response.body().unwrap();
            ResponseOutparam::set(out, Ok(response));
            let stream = body.write().unwrap();
            stream
                .blocking_write_and_flush(format!("plain wasi says hi to {path}\n").as_bytes())
                .unwrap();
            // For the containment tests: answer, start the body, then crash. A bare
            // `unreachable` traps at once (a panic would first print its message).
            if path.ends_with("/trap-after-answering") {
                core::arch::wasm32::unreachable();
            }
            // For the cancellation test: answer, start the body, then never finish it.
            // Its client goes away; the host must end it then, not at its timeout.
            if path.ends_with("/spin-after-answering") {
                let mut x = 0u64;
                loop {
                    x = core::hint::black_box(x.wrapping_add(1));
                }
            }
            // A panic prints first (stderr is asynchronous), so the host has sent the
            // headers by the time the trap comes.
            if path.ends_with("/panic-after-answering") {
                panic!("plain-wasi: panicking after answering");
            }
            drop(stream);
            OutgoingBody::finish(body, None).unwrap();
        }
    }

    fn respond(out: ResponseOutparam, text: &str) {
        let response = OutgoingResponse::new(Fields::new());
        let body = response.body().unwrap();
        ResponseOutparam::set(out, Ok(response));
        let stream = body.write().unwrap();
        stream.blocking_write_and_flush(text.as_bytes()).unwrap();
        drop(stream);
        OutgoingBody::finish(body, None).unwrap();
    }

    wasip2::http::proxy::export!(Plain with_types_in wasip2);
}
